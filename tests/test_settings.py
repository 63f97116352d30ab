from __future__ import annotations

import pytest
import redis

from memstream.producers import ConfigError, Producer, Settings
from memstream.producers.connection import client_options
from memstream.producers.errors import AuthenticationError


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
    assert opts["password"] == "pw"


def test_password_is_a_secret() -> None:
    s = Settings(password="hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.password is not None and s.password.get_secret_value() == "hunter2"


def test_password_in_the_url_moves_out_of_it() -> None:
    s = Settings.from_url("redis://agent:p%40ss@cache:6380/2")
    assert "p@ss" not in repr(s) and "p%40ss" not in repr(s) and "p%40ss" not in s.redis_url
    assert s.redis_url == "redis://agent@cache:6380/2"
    assert s.username == "agent"
    assert client_options(s)["password"] == "p@ss"
    # An explicit password wins over the URL's, which is dropped either way.
    t = Settings.from_url("redis://:old@cache:6380/0", password="new")
    assert t.redis_url == "redis://cache:6380/0"
    assert t.password is not None and t.password.get_secret_value() == "new"
    env = Settings.from_env({"MEMSTREAM_REDIS_URL": "rediss://u:envpw@h:1/0"})
    assert "envpw" not in repr(env) and env.tls


def test_a_bad_password_setting_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(password=["not", "a", "string"])
    assert "password" in str(info.value) and "not" not in str(info.value).split(":", 1)[1]


def test_explicit_values_win_over_environment() -> None:
    s = Settings.from_env({"MEMSTREAM_REDIS_URL": "redis://a:1/0"}, redis_url="redis://b:2/0")
    assert s.redis_url == "redis://b:2/0"


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="socket_timeout"):
        Settings.from_env({"MEMSTREAM_SOCKET_TIMEOUT": "-1"})
    with pytest.raises(ConfigError, match="redis_url"):
        Settings.from_env({"MEMSTREAM_REDIS_URL": "http://x"})
    # Direct construction too: never a raw pydantic ValidationError.
    with pytest.raises(ConfigError, match="connect_timeout"):
        Settings(connect_timeout=0)
    with pytest.raises(ConfigError, match="retrys"):
        Settings.from_url("redis://x:1/0", retrys=3)


def test_acl_user_can_append_and_wrong_password_cannot(deployed: str, r: redis.Redis) -> None:
    r.acl_setuser(
        "agent", enabled=True, passwords=["+s3cret"], keys=["ms:*"], commands=["+@all"],
        channels=["*"],
    )  # fmt: skip
    try:
        with Producer.from_url(deployed, username="agent", password="s3cret") as producer:
            assert producer.append_message("alice", "s1", "user", "hi").log_id
        bad = Producer.from_url(deployed, username="agent", password="nope", retries=0)
        with bad, pytest.raises(AuthenticationError, match="'agent'") as info:
            bad.append_message("alice", "s1", "user", "hi")
        assert "nope" not in str(info.value)
    finally:
        r.acl_deluser("agent")
