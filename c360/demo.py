"""``c360 demo`` (and ``make demo``): the whole pipeline on the local broker and local Delta tables."""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

from lakehouse.config import Config
from lakehouse.tables import OPS_BATCHES, QUARANTINE, table_path
from streaming.silver import TRANSFORMS

log = logging.getLogger(__name__)

DEMO_AS_OF = date(2025, 1, 1)  # the generated activity ends 2024-12-31


def _step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def run(cfg: Config, *, scale: int, keep_broker: bool) -> int:
    from batch import gold
    from lakehouse.kafka_local import LocalKafka
    from lakehouse.spark import get_spark
    from producers.generate import GenerateParams, generate
    from producers.replay import replay
    from streaming import app

    t0 = time.monotonic()
    broker = LocalKafka.from_config(cfg) if cfg.kafka.embedded else None
    started_broker = False
    try:
        if broker is not None:
            _step("starting the local Kafka broker")
            started_broker = not broker.status().running
            print(broker.start().describe())
        _step(f"generating {scale} customers into {cfg.lake.data_dir}")
        summary = generate(cfg.lake.data_dir, GenerateParams(scale=scale))
        print(", ".join(f"{f}: {n} rows" for f, n in summary.rows.items()))
        _step(f"replaying the files into Kafka at {cfg.kafka.bootstrap_servers}")
        print(replay(cfg, cfg.lake.data_dir, progress=False).describe())
        _step("streaming Kafka -> bronze -> silver (available-now)")
        app.run(cfg, available_now=True)
        _step("refreshing gold")
        for r in gold.run(cfg, as_of=DEMO_AS_OF):
            print(f"{r.table}: {r.rows} rows")

        _step("what is in the lake")
        spark = get_spark(cfg)
        names = ([f"bronze_{s}" for s in TRANSFORMS] + [f"silver_{s}" for s in TRANSFORMS]
                 + [QUARANTINE, OPS_BATCHES] + list(gold.PRODUCTS))
        for name in names:
            path = table_path(cfg.lake.root, name)
            print(f"{name:<28} {spark.read.format('delta').load(path).count():>8} rows  {path}")
        q = spark.read.format("delta").load(table_path(cfg.lake.root, QUARANTINE))
        print("\nquarantined by reason:")
        for row in q.groupBy("source", "reason").count().orderBy("source", "reason").collect():
            print(f"  {row['source']:<10} {row['reason']:<36} {row['count']}")
        print(f"\nDone in {time.monotonic() - t0:.0f}s. Where to look:")
        print(f"  Delta tables:      {Path(cfg.lake.root).resolve()}  (read with spark.read.format('delta'))")
        print(f"  generated inputs:  {Path(cfg.lake.data_dir).resolve()}  (dirt labels in _labels/)")
        print(f"  checkpoints:       {Path(cfg.lake.checkpoint_root).resolve()}")
        if broker is not None:
            print(f"  broker log:        {broker.log_file}")
        return 0
    finally:
        if broker is not None and started_broker and not keep_broker:
            broker.stop()
            print("local Kafka broker stopped")
