from __future__ import annotations

import pytest
import redis

from memstream.producers import ConfigError, Producer, Settings
from memstream.producers.connection import client_options


def test_from_env_reads_prefixed_variables() -> None:
    s = Settings.from_env(
        {
            "MEMSTREAM_REDIS_URL": "rediss://cache:6380/2",
            "MEMSTREAM_USERNAME": "agent",
            "MEMSTREAM_PASSWORD": "pw",
            "MEMSTREAM_SOCKET_TIMEOUT": "1.5",
            "MEMSTREAM_TLS_VERIFY": "false",
            "MEMSTREAM_REDACT_EMAILS": "1",
        }
    )
    assert s.tls and s.username == "agent" and s.socket_timeout == 1.5
    assert s.redact_emails is True
    opts = client_options(s)
    assert opts["ssl_cert_reqs"] == "none"
    assert opts["username"] == "agent"


def test_explicit_values_win_over_environment() -> None:
    s = Settings.from_env({"MEMSTREAM_REDIS_URL": "redis://a:1/0"}, redis_url="redis://b:2/0")
    assert s.redis_url == "redis://b:2/0"


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="socket_timeout"):
        Settings.from_env({"MEMSTREAM_SOCKET_TIMEOUT": "-1"})
    with pytest.raises(ConfigError, match="redis_url"):
        Settings.from_env({"MEMSTREAM_REDIS_URL": "http://x"})


def test_acl_user_can_append_and_wrong_password_cannot(deployed: str, r: redis.Redis) -> None:
    r.acl_setuser(
        "agent", enabled=True, passwords=["+s3cret"], keys=["ms:*"], commands=["+@all"],
        channels=["*"],
    )  # fmt: skip
    try:
        with Producer.from_url(deployed, username="agent", password="s3cret") as producer:
            assert producer.append_message("alice", "s1", "user", "hi").log_id
        bad = Producer.from_url(deployed, username="agent", password="nope", retries=0)
        with bad, pytest.raises(redis.AuthenticationError):
            bad.append_message("alice", "s1", "user", "hi")
    finally:
        r.acl_deluser("agent")
