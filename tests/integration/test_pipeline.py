"""End to end through the CLI on real Kafka, Spark and Delta: generate -> replay -> stream -> gold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from c360 import cli
from lakehouse.tables import BRONZE_RECORDS, table_path

pytestmark = pytest.mark.integration


def _args(cfg) -> list[str]:
    return ["--bootstrap", cfg.kafka.bootstrap_servers, "--lake", cfg.lake.root,
            "--checkpoints", cfg.lake.checkpoint_root]


def _env(monkeypatch, cfg):
    for section, key in (("lake", "data_dir"), ("lake", "state_dir"), ("kafka", "topic_prefix"),
                         ("kafka", "partitions"), ("kafka", "connect_timeout_s"),
                         ("spark", "shuffle_partitions"), ("dashboard", "file")):
        monkeypatch.setenv(f"C360_{section.upper()}_{key.upper()}", str(getattr(getattr(cfg, section), key)))


def _table(spark, cfg, name):
    return spark.read.format("delta").load(table_path(cfg.lake.root, name))


def _bronze(spark, cfg, source):
    """The bronze records of one source (bronze_records holds every source's)."""
    return _table(spark, cfg, BRONZE_RECORDS).where(F.col("source") == source)


def test_replay_stream_gold_end_to_end_and_replay_twice_adds_no_duplicates(spark, kafka_cfg, monkeypatch, capsys):
    cfg = kafka_cfg
    _env(monkeypatch, cfg)
    data = Path(cfg.lake.data_dir)
    assert cli.main(["generate", "--scale", "300", "--seed", "11", "--out", str(data)]) == 0
    truth = json.loads((data / "_labels" / "summary.json").read_text())["truth"]

    replay = ["replay", "--input", str(data), "--sources", "customers,logins", "--no-progress", *_args(cfg)]
    assert cli.main(replay) == 0
    out = capsys.readouterr().out
    sent_customers = truth["customer_rows"] - truth["customers_malformed_rows"]  # malformed rows: rejected
    assert f"sent {sent_customers + truth['login_rows']} records" in out
    assert f"skipped {truth['customers_malformed_rows']} unreadable rows" in out
    assert cli.main(["stream", "--available-now", *_args(cfg)]) == 0

    bronze_c = _bronze(spark, cfg, "customers")
    assert bronze_c.count() == sent_customers
    assert bronze_c.where("_source_file = 'customers.csv' AND _source_line >= 2 AND value IS NOT NULL").count() \
        == sent_customers
    assert _bronze(spark, cfg, "logins").count() == truth["login_rows"]
    silver_c = _table(spark, cfg, "silver_customers")
    assert silver_c.count() == truth["customers_valid"]
    assert silver_c.select("customer_id").distinct().count() == truth["customers_valid"]
    assert silver_c.where("NOT email_valid").count() == truth["customers_invalid_email"]
    assert silver_c.where("last_login_datetime IS NULL").count() == truth["customers_never_logged_in"]
    silver_l = _table(spark, cfg, "silver_logins")
    assert silver_l.count() == truth["logins_valid"]
    assert silver_l.select("login_id").distinct().count() == truth["logins_valid"]

    q = {(r.source, r.reason): r["count"] for r in
         _table(spark, cfg, "silver_quarantine").groupBy("source", "reason").count().collect()}
    dup_bad = _table(spark, cfg, "silver_quarantine").where("source = 'customers'").count() \
        - truth["customers_bad_registration"] - truth["customers_missing_id"]
    assert dup_bad >= 0  # a dirty row may also have been duplicated: both copies are quarantined
    assert q[("customers", "unparseable_registration_datetime")] >= truth["customers_bad_registration"]
    assert q[("customers", "missing_customer_id")] >= truth["customers_missing_id"]
    assert q[("logins", "missing_customer_id")] >= truth["logins_missing_customer_id"]

    # nothing lost: every record read is in silver, in quarantine, or a counted duplicate
    ops = _table(spark, cfg, "ops_stream_batches").groupBy("source").sum().collect()
    for r in ops:
        assert r["sum(read_rows)"] == (r["sum(quarantined_rows)"] + r["sum(duplicate_rows)"]
                                       + r["sum(inserted_rows)"] + r["sum(updated_rows)"])
    first = {r.source: r for r in ops}
    assert first["customers"]["sum(inserted_rows)"] == truth["customers_valid"]

    silver_before = sorted(tuple(r) for r in silver_c.drop("_updated_at").collect())
    # the same files again: bronze keeps every raw record, silver gets no duplicates
    assert cli.main(replay) == 0
    assert cli.main(["stream", "--available-now", *_args(cfg)]) == 0
    assert _bronze(spark, cfg, "customers").count() == 2 * sent_customers
    silver_c = _table(spark, cfg, "silver_customers")
    assert silver_c.count() == truth["customers_valid"]
    assert _table(spark, cfg, "silver_logins").count() == truth["logins_valid"]
    # a re-sent identical record is a duplicate, not an update: silver rows are untouched
    assert sorted(tuple(r) for r in silver_c.drop("_updated_at").collect()) == silver_before
    second = _table(spark, cfg, "ops_stream_batches").where("batch_id >= 1").groupBy("source").sum().collect()
    for r in second:
        assert r["sum(inserted_rows)"] == 0 and r["sum(updated_rows)"] == 0

    exports = Path(cfg.lake.root).parent / "exports"
    assert cli.main(["gold", "--as-of", "2025-01-01", "--only", "gold_customer_activity", "--exports", str(exports),
                     *_args(cfg)]) == 0
    assert (exports / "csv" / "gold_customer_activity.csv").is_file()
    gold = _table(spark, cfg, "gold_customer_activity")
    assert gold.count() == truth["customers_valid"]
    assert gold.where("churn_status = 'Never Logged In'").count() == truth["customers_never_logged_in"]
    assert gold.where("last_login_label = 'Never Logged In'").count() == truth["customers_never_logged_in"]
    assert "gold_customer_activity" in capsys.readouterr().out


def test_gold_on_an_empty_lake_says_to_run_the_stream_first(spark, cfg, capsys):
    assert cli.main(["gold", "--lake", cfg.lake.root]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"c360: error: no silver table exists in {cfg.lake.root}")
    assert err[0].endswith("run `c360 stream` first")
