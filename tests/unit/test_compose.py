"""docker-compose.yml cannot run here (no Docker engine): check what can be checked without one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from c360.cli import build_parser, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def c360_services(compose):
    return {name: s for name, s in compose["services"].items() if name.startswith("c360-")}


def test_every_c360_service_runs_a_real_c360_command(compose):
    services = c360_services(compose)
    assert {"c360-stream", "c360-replay", "c360-gold", "c360-dashboard"} <= set(services)
    parser = build_parser()
    for name, service in services.items():
        args = parser.parse_args(service["command"])  # exits (fails the test) on an unknown command or flag
        assert args.command == name.removeprefix("c360-")
        assert service.get("image") == "c360:latest"


def test_c360_services_point_at_the_compose_kafka_and_spark(compose):
    kafka_env = compose["services"]["kafka"]["environment"]
    internal = re.search(r"PLAINTEXT://([\w-]+):(\d+)", kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    master_cmd = compose["services"]["spark-master"]["command"]
    master_port = master_cmd[master_cmd.index("--port") + 1]
    for name, service in c360_services(compose).items():
        env = service["environment"]
        assert env["C360_KAFKA_BOOTSTRAP"] == f"{internal.group(1)}:{internal.group(2)}", name
        assert env["C360_SPARK_MASTER"] == f"spark://spark-master:{master_port}", name
        assert internal.group(1) in compose["services"]


def test_environment_is_valid_c360_configuration(compose, monkeypatch):
    env = c360_services(compose)["c360-stream"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    cfg = load_config(build_parser().parse_args(["stream"]))
    assert cfg.kafka.bootstrap_servers == "kafka:9092" and not cfg.kafka.embedded
    assert cfg.lake.root == "/lake/tables"
    # an executor asks the worker for no more memory than it offers (else the app waits for resources forever)
    worker = compose["services"]["spark-worker"]["command"]
    offered, asked = worker[worker.index("--memory") + 1], cfg.spark.settings["spark.executor.memory"]
    assert asked.endswith("g") and offered.endswith("g") and int(asked[:-1]) < int(offered[:-1])


def _mounts(service) -> dict[str, str]:
    return dict(v.split(":")[:2][::-1] for v in service.get("volumes", []))  # container path -> volume


def test_volumes_are_declared_and_shared_where_data_flows(compose):
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in _mounts(service).values():
            assert volume in declared, f"{name} mounts undeclared volume {volume}"
    services = compose["services"]
    for name, service in c360_services(compose).items():
        env = service["environment"]
        mounts = _mounts(service)
        if name in ("c360-stream", "c360-gold", "c360-dashboard"):  # they use the lake: so do the executors on the worker
            lake_mount = next(p for p in mounts if env["C360_LAKE_ROOT"].startswith(p))
            assert _mounts(services["spark-worker"]).get(lake_mount) == mounts[lake_mount]
        if name in ("c360-generate", "c360-replay"):
            assert env["C360_LAKE_DATA_DIR"] in mounts
    assert _mounts(services["c360-generate"])["/data"] == _mounts(services["c360-replay"])["/data"]


def test_published_ports_listen_on_localhost_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
