"""TLS and SASL end to end on a real broker: `c360 replay` and `c360 stream` reach a SASL_SSL listener (its
certificate checked against the configured CA, host name included) with the settings from configuration and the
password from the environment, which no output ever shows; a wrong password or an untrusted certificate is one
clear line."""

from __future__ import annotations

import csv

import pytest

from c360 import cli
from lakehouse.tables import SOURCES
from tests.conftest import tls_files
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


def test_replay_and_stream_over_tls_and_sasl_with_the_password_only_in_the_environment(
        spark, kafka, kafka_cfg, monkeypatch, capfd, caplog, tmp_path):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    password = kafka.sasl_users["c360"]
    for key, value in (("BOOTSTRAP", kafka.ssl_bootstrap), ("SECURITY_PROTOCOL", "SASL_SSL"),
                       ("SSL_CA_LOCATION", str(kafka.ca_file)), ("SASL_USERNAME", "c360"), ("SASL_PASSWORD", password)):
        monkeypatch.setenv(f"C360_KAFKA_{key}", value)
    data = tmp_path / "in"
    _customers_file(data)
    lake = ["--lake", cfg.lake.root, "--checkpoints", cfg.lake.checkpoint_root]
    assert cli.main(["replay", "--input", str(data), "--sources", "customers", "--no-progress"]) == 0
    assert cli.main(["stream", "--available-now", "--sources", "customers", *lake]) == 0
    assert sorted(r.customer_id for r in _table(spark, cfg, "silver_customers").collect()) == ["C0", "C1", "C2"]
    out = capfd.readouterr()  # the process's own stdout/stderr, the JVM's included
    assert password not in out.out + out.err + caplog.text

    # a certificate the configured CA did not sign: one line saying what to check
    monkeypatch.setenv("C360_KAFKA_CONNECT_TIMEOUT_S", "5")
    (tmp_path / "other-ca").mkdir()
    other_ca, _ = tls_files(tmp_path / "other-ca")
    monkeypatch.setenv("C360_KAFKA_SSL_CA_LOCATION", str(other_ca))
    assert cli.main(["replay", "--input", str(data), "--sources", "customers", "--no-progress"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the TLS connection to Kafka failed" in err[0] and "kafka.ssl_ca_location" in err[0], err

    # a wrong password (on the SASL_PLAINTEXT listener): one line saying what to check, nothing sent
    monkeypatch.setenv("C360_KAFKA_BOOTSTRAP", kafka.sasl_bootstrap)
    monkeypatch.setenv("C360_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("C360_KAFKA_SASL_PASSWORD", password + "x")
    assert cli.main(["replay", "--input", str(data), "--sources", "customers", "--no-progress"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Kafka refused c360's credentials" in err[0] and "C360_KAFKA_SASL_PASSWORD" in err[0], err
    assert password not in err[0]
