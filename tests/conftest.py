"""Session-scoped fixtures: one real Kafka broker and one SparkSession for the whole test run."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest

from lakehouse import config
from lakehouse.jars import PROJECT_ROOT
from lakehouse.kafka_local import LocalKafka, free_port
from lakehouse.spark import QUICK_JIT

STATE_DIR = PROJECT_ROOT / ".c360"  # the jar cache `make test` fills (c360 setup)

# Every JVM the tests start (the session's Spark drivers, the Kafka brokers, the CLI's subprocesses) compiles with C1
# only. On small data C2's optimizing compiles cost more CPU than they save, and two cores are the bottleneck of
# `make test`: the shared lake's build alone took a third less CPU (279 -> 184 s) and a fifth less time. The whole
# suite gained less: pytest 702 s twice against 712 and 748 s without (2026-11-25; the machine's spread is as large).
# Semantics are the JVM's either way; the product's own JVMs keep tiered compilation (but `c360 demo`'s driver). A
# JDK_JAVA_OPTIONS of your own wins.
os.environ.setdefault("JDK_JAVA_OPTIONS", QUICK_JIT)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`make test` runs two workers with --dist loadgroup), the tests that share the streamed
    and refreshed lake run on one worker, so that it is built once."""
    for item in items:
        if {"streamed", "gold"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("lake"))


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate authority and a broker certificate it signed for 127.0.0.1 and localhost, made with
    openssl: (the CA's certificate, the broker's PEM keystore: private key + certificate)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=c360 test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=broker")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.cnf", "-out", "broker.pem")
    keystore = folder / "broker-keystore.pem"
    keystore.write_text((folder / "broker.key").read_text() + (folder / "broker.pem").read_text())
    return folder / "ca.pem", keystore


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """A real single-node Kafka broker (KRaft) on free ports, started with the code of `c360 kafka start`; it
    also serves SASL_PLAINTEXT clients (PLAIN, user ``c360``, password ``broker.sasl_users["c360"]``, made up
    per run) on ``broker.sasl_bootstrap``, and SASL_SSL clients on ``broker.ssl_bootstrap`` (a certificate for
    127.0.0.1 signed by the CA in ``broker.ca_file``)."""
    ca, keystore = tls_files(tmp_path_factory.mktemp("tls"))
    broker = LocalKafka(STATE_DIR, "127.0.0.1", free_port(), free_port(), heap="512m",
                        home=tmp_path_factory.mktemp("kafka"), sasl_port=free_port(),
                        sasl_users={"c360": secrets.token_urlsafe(12)}, ssl_port=free_port(), ssl_keystore=keystore)
    broker.ca_file = ca
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def make_config(root: Path, bootstrap: str = "") -> config.Config:
    """A configuration whose lake, checkpoints and data live under ``root`` (environment ignored)."""
    return config.load(environ={}, overrides={
        "kafka": {"bootstrap": bootstrap, "connect_timeout_s": 10, "partitions": 2},
        "lake": {"root": str(root / "lake"), "checkpoint_root": str(root / "checkpoints"),
                 "data_dir": str(root / "data"), "state_dir": str(STATE_DIR)},
        "spark": {"driver_memory": "2g", "shuffle_partitions": 2},
        "stream": {"trigger_interval": "1 second", "derived_trigger_interval": "1 second"},
        "dashboard": {"file": str(root / "dashboard.html")},
    })


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lakehouse.spark import get_spark

    session = get_spark(make_config(tmp_path_factory.mktemp("spark")), "c360-tests")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """A small clean generated universe (60 customers, no dirt), for the parsers' tests."""
    from producers.generate import GenerateParams, generate

    out = tmp_path_factory.mktemp("gen")
    generate(out, GenerateParams(scale=60, seed=5, dirty_rate=0.0))
    return out


@pytest.fixture
def cfg(tmp_path) -> config.Config:
    """A fresh lake per test, no broker."""
    return make_config(tmp_path)


@pytest.fixture
def kafka_cfg(tmp_path, kafka) -> config.Config:
    """A fresh lake per test, on the session's broker (topics get a per-test prefix)."""
    cfg = make_config(tmp_path, kafka.bootstrap)
    return cfg.replace("kafka", topic_prefix=f"t{uuid.uuid4().hex[:8]}.")
