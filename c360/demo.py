"""``c360 demo`` (and ``make demo``): the whole pipeline on the local broker and local Delta tables."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import date, datetime
from pathlib import Path

from lakehouse.config import Config
from lakehouse.spark import QUICK_JIT, with_settings
from lakehouse.tables import QUARANTINE, SOURCES, table_path
from streaming.ops import stream_table_names

log = logging.getLogger(__name__)

DEMO_AS_OF = date(2025, 1, 1)  # the generated activity ends 2024-12-31
DEMO_DIR = Path("demo")


def demo_config(cfg: Config) -> Config:
    """The demo's own workspace (demo/: lake, checkpoints, data) and topics: it never touches your lake.

    On the embedded broker its topics are ``demo.*`` (recreated each run); on an external cluster each run gets
    topics of its own, so nothing there is deleted. Its Spark driver compiles with C1 only (:data:`QUICK_JIT`: a
    JVM of three minutes on 2,000 customers): on 2 cores the demo used 255-264 s of the machine's CPU instead of
    308-315 s, in 161-167 s instead of 167-174 s (2026-11-25, two runs each). JVM options of your own in
    ``spark.conf`` come after, and win.
    """
    prefix = "demo." if cfg.kafka.embedded else f"c360-demo-{datetime.now():%Y%m%d%H%M%S}."
    cfg = cfg.replace("lake", root=str(DEMO_DIR / "lake"), checkpoint_root=str(DEMO_DIR / "checkpoints"),
                      data_dir=str(DEMO_DIR / "data"))
    cfg = cfg.replace("gold", export_dir=str(DEMO_DIR / "exports"))
    cfg = cfg.replace("dashboard", file=str(DEMO_DIR / "dashboard.html"))
    cfg = cfg.replace("spark", conf=with_settings({"spark.driver.extraJavaOptions": QUICK_JIT}, cfg.spark.settings))
    return cfg.replace("kafka", topic_prefix=prefix)


def _step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def run(cfg: Config, *, scale: int, keep_broker: bool) -> int:
    from batch import gold
    from lakehouse.engine import get_session, read_table, release_spark
    from lakehouse.kafka_admin import delete_topics
    from lakehouse.kafka_local import LocalKafka
    from lakehouse.kafka_security import client_security
    from producers.generate import GenerateParams, generate
    from producers.replay import replay
    from streaming import app

    t0 = time.monotonic()
    cfg = demo_config(cfg)
    broker = LocalKafka.from_config(cfg) if cfg.kafka.embedded else None
    started_broker = False
    try:
        if broker is not None:
            _step("starting the local Kafka broker")
            started_broker = not broker.status().running
            print(broker.start().describe())
            gone = delete_topics(cfg.kafka.bootstrap_servers, cfg.kafka.topic_prefix, cfg.kafka.connect_timeout_s,
                                 client_security(cfg.kafka))
            if gone:
                print(f"removed the previous demo's {len(gone)} topics")
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
        _step(f"generating {scale} customers into {cfg.lake.data_dir}")
        summary = generate(cfg.lake.data_dir, GenerateParams(scale=scale))
        print(f"{sum(summary.rows.values())} rows ({summary.events} events) in {len(summary.rows)} files")
        _step(f"replaying the files into Kafka at {cfg.kafka.bootstrap_servers}")
        print(replay(cfg, cfg.lake.data_dir, progress=False).describe())
        _step("streaming Kafka -> bronze -> silver, login anomalies, city x hour counts (available-now)")
        app.run(cfg, available_now=True)
        release_spark()  # the stream's Spark goes: gold runs on the embedded engine (batch.engine auto)
        _step("refreshing gold (and the dashboard)")
        for r in gold.run(cfg, as_of=DEMO_AS_OF):
            print(f"{r.table}: {r.rows} rows")
        print(f"dashboard refreshed: {gold.refresh_dashboard(cfg)}")

        _step("what is in the lake")
        spark = get_session(cfg)
        names = stream_table_names(list(SOURCES)) + list(gold.PRODUCTS)
        for name in names:
            path = table_path(cfg.lake.root, name)
            print(f"{name:<28} {read_table(spark, path).count():>8} rows  {path}")
        q = read_table(spark, table_path(cfg.lake.root, QUARANTINE))
        print("\nquarantined by reason:")
        for row in q.groupBy("source", "reason").count().orderBy("source", "reason").collect():
            print(f"  {row['source']:<10} {row['reason']:<36} {row['count']}")
        print(f"\nDone in {time.monotonic() - t0:.0f}s. Where to look:")
        print(f"  Delta tables:      {Path(cfg.lake.root).resolve()}  (read with spark.read.format('delta'))")
        print(f"  generated inputs:  {Path(cfg.lake.data_dir).resolve()}  (dirt labels in _labels/)")
        print(f"  checkpoints:       {Path(cfg.lake.checkpoint_root).resolve()}")
        print(f"  dashboard:         {Path(cfg.dashboard.file).resolve()}  (open it in a browser, works offline;"
              " or `c360 dashboard --serve --lake demo/lake` for http://127.0.0.1:8360/)")
        print(f"  BI exports:        {Path(cfg.gold.export_dir).resolve()}  (csv/<table>.csv, parquet/; PII masked)")
        print("  gold tables:       docs/gold.md says what each one answers")
        if broker is not None:
            print(f"  broker log:        {broker.log_file}")
        return 0
    finally:
        if broker is not None and started_broker and not keep_broker:
            broker.stop()
            print("local Kafka broker stopped")
