"""SASL end to end on a real broker: `c360 replay` and `c360 stream` reach a SASL_PLAINTEXT listener with the
settings from configuration and the password from the environment, which no output ever shows; a wrong
password is one clear line."""

from __future__ import annotations

import csv

import pytest

from c360 import cli
from lakehouse.tables import SOURCES
from tests.integration.test_pipeline import _env, _table

pytestmark = pytest.mark.integration


def _customers_file(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / SOURCES["customers"].file).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SOURCES["customers"].columns)
        for i in range(3):
            w.writerow([f"C{i}", f"Name {i}", f"n{i}@example.com", "+1 555 0100", "Pune", "2024-01-02 10:00:00", "",
                        "Active"])


def test_replay_and_stream_over_sasl_with_the_password_only_in_the_environment(
        spark, kafka, kafka_cfg, monkeypatch, capfd, caplog, tmp_path):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    password = kafka.sasl_users["c360"]
    for key, value in (("BOOTSTRAP", kafka.sasl_bootstrap), ("SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                       ("SASL_USERNAME", "c360"), ("SASL_PASSWORD", password)):
        monkeypatch.setenv(f"C360_KAFKA_{key}", value)
    data = tmp_path / "in"
    _customers_file(data)
    lake = ["--lake", cfg.lake.root, "--checkpoints", cfg.lake.checkpoint_root]
    assert cli.main(["replay", "--input", str(data), "--sources", "customers", "--no-progress"]) == 0
    assert cli.main(["stream", "--available-now", "--sources", "customers", *lake]) == 0
    assert sorted(r.customer_id for r in _table(spark, cfg, "silver_customers").collect()) == ["C0", "C1", "C2"]
    out = capfd.readouterr()  # the process's own stdout/stderr, the JVM's included
    assert password not in out.out + out.err + caplog.text

    # the same, with a wrong password: one line saying what to check, nothing sent
    monkeypatch.setenv("C360_KAFKA_SASL_PASSWORD", password + "x")
    monkeypatch.setenv("C360_KAFKA_CONNECT_TIMEOUT_S", "5")
    assert cli.main(["replay", "--input", str(data), "--sources", "customers", "--no-progress"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Kafka refused c360's credentials" in err[0] and "C360_KAFKA_SASL_PASSWORD" in err[0], err
    assert password not in err[0]
