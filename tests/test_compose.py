"""compose/ without a Docker engine: every service's command runs against the installed
CLI, every variable it sets is one something reads, and Redis takes its command line.

No Docker engine runs on the test machines (issue 14), so this is what can be checked
here: the files parse, each memstream command line (and health check) is accepted by
the CLI (`--help` after it exits 0 only when every option before it parses), each
``MEMSTREAM_*`` variable is a settings field, the Redis nodes start with exactly the
options the files give them, and the image copies every package the wheel holds.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from memstream.producers.settings import ENV_PREFIX, Settings
from memstream.workers.cli import main
from tests.redis_server import RedisServer, free_port
from tests.workers_util import spawn_worker, stop_worker

ROOT = Path(__file__).resolve().parent.parent
FILES = ["compose/compose.yaml", "compose/compose.cluster.yaml"]
IMAGE = "memstream:latest"
BOTO3_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
"""Set for the tier process's S3 client (boto3 reads them), not for memstream."""


def _services(name: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / name).read_text())
    services: dict[str, Any] = document["services"]
    return services


def _ours(name: str) -> dict[str, Any]:
    return {k: v for k, v in _services(name).items() if v.get("image") == IMAGE}


def _command_lines(name: str) -> list[list[str]]:
    lines = []
    for service in _ours(name).values():
        lines.append(list(service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[0] == "CMD", test
            lines.append(list(test[1:]))
    return lines


@pytest.mark.parametrize("name", FILES)
def test_every_memstream_command_line_is_accepted_by_the_cli(name: str) -> None:
    lines = _command_lines(name)
    assert {line[1] for line in lines} >= {"init", "worker", "tier", "demo", "health"}
    for line in lines:
        assert line[0] == "memstream", line
        proc = subprocess.run(
            [sys.executable, "-m", "memstream.workers.cli", *line[1:], "--help"],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, (line, proc.stderr[-1000:])


@pytest.mark.parametrize("name", FILES)
def test_every_variable_set_is_read(name: str) -> None:
    fields = set(Settings.model_fields)
    seen = set()
    for service in _ours(name).values():
        for var, value in service["environment"].items():
            seen.add(var)
            if var in BOTO3_VARS:
                continue
            assert var.startswith(ENV_PREFIX), var
            field = var[len(ENV_PREFIX) :].lower()
            assert field in fields, f"{var} is set in {name} but no setting reads it"
            Settings.from_env({var: str(value)})  # the value itself is valid
    assert "MEMSTREAM_REDIS_URL" in seen and "MEMSTREAM_ARCHIVE_URL" in seen


@pytest.mark.parametrize("name", FILES)
def test_services_depend_on_services_that_exist_and_workers_scale(name: str) -> None:
    services = _services(name)
    for service in services.values():
        for needed in service.get("depends_on", {}):
            assert needed in services, needed
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["init"]["restart"] == "no"
    assert services["worker"]["depends_on"]["init"]["condition"] == (
        "service_completed_successfully"
    )


def _redis_options(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[0] == "redis-server", argv
    return argv[1:]


@pytest.mark.parametrize(
    ("name", "service"), [("compose/compose.yaml", "redis"),
                          ("compose/compose.cluster.yaml", "redis-1")],
)  # fmt: skip
def test_redis_starts_with_the_files_options(name: str, service: str, tmp_path: Path) -> None:
    options = _redis_options(_services(name)[service]["command"])
    # The bus port defaults to port + 10000, past 65535 for a high free port: pick one.
    bus = ["--cluster-port", str(free_port())] if "--cluster-enabled" in options else []
    server = RedisServer(tmp_path / "redis", *options, *bus)
    try:
        with redis.Redis(port=server.port) as client:
            config = client.config_get("*")
            assert config["appendonly"] == "yes"
            assert config["maxmemory-policy"] == "noeviction"
            assert config["appendfsync"] == "always"
            if "--cluster-enabled" in options:
                assert client.info("cluster")["cluster_enabled"] == 1
    finally:
        server.stop()


def test_the_cluster_file_forms_three_primaries_with_a_replica_each() -> None:
    services = _services("compose/compose.cluster.yaml")
    create = " ".join(services["create-cluster"]["command"])
    nodes = re.findall(r"redis-\d:6379", create)
    assert len(nodes) == 6 and "--cluster-replicas 1" in create
    assert all(n.split(":")[0] in services for n in nodes)
    for service in _ours("compose/compose.cluster.yaml").values():
        assert service["environment"]["MEMSTREAM_CLUSTER"] == "1"


def test_the_image_copies_every_package_the_wheel_holds() -> None:
    packages = re.search(r"^PKGS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert packages is not None
    dockerfile = (ROOT / "compose/Dockerfile").read_text()
    for package in packages.group(1).split():
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package
    assert "torch" in dockerfile and "download.pytorch.org/whl/cpu" in dockerfile


@pytest.mark.timeout(120)
def test_the_demo_producer_runs_against_a_deployment(
    deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = spawn_worker(deployed, "compose-w1", log=tmp_path / "worker.log")
    try:
        assert main(["demo", "--agents-only", "--redis-url", deployed]) == 0
        out = capsys.readouterr().out
        assert "dead-lettered: 0" in out and "run 1:" in out
        assert "history of" in out
        assert main(["demo", "--agents-only", "--redis-url", deployed]) == 0
        assert "run 2:" in capsys.readouterr().out
    finally:
        assert stop_worker(worker) == 0
