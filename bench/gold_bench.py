"""The gold benchmark: ``c360 gold`` at 1,000,000 customers next to DuckDB on the same silver data.

Silver is synthesized at scale (``bench.gold_data``), then ``c360 gold`` refreshes every gold table with its
exports on the embedded engine (the default on one machine) and on Spark (driver memory: its own ``auto``
setting), and the two refreshes' exports are compared; then the subset the peer computes (RFM, CLV, cohorts) alone,
then DuckDB computes RFM segments, the CLV model summary and the cohort matrix from the same silver Parquet files
(the files of each Delta table's current version) and writes them to Parquet. The two sides' RFM segment counts
and cohort matrices are compared: the figure says whether they agree. Last, the same three queries run in Spark SQL
on the same files, in a Spark session configured as ``c360 gold``'s: how far Spark's engine alone is from DuckDB
on exactly the peer's work (``gold_peer_queries_spark_sql_seconds``), against which c360's own figures can be read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from batch.rfm import SEGMENT_RULES
from lakehouse.config import GOLD_ACCELERATORS

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2025-01-01"


def delta_files(table: Path) -> list[str]:
    """The Parquet files of a Delta table's current version, from its JSON log (add minus remove)."""
    live: dict[str, None] = {}
    for log in sorted((table / "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = None
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    if list((table / "_delta_log").glob("*.checkpoint*.parquet")):
        raise RuntimeError(f"{table} has a checkpoint: read it with Spark instead")
    from urllib.parse import unquote

    return [str(table / unquote(p)) for p in live]


def parquet_of(table: Path, **options: str) -> str:
    """DuckDB's ``read_parquet`` over a Delta table's current files."""
    files = ", ".join(f"'{f}'" for f in delta_files(table))
    extra = "".join(f", {k} = {v}" for k, v in options.items())
    return f"read_parquet([{files}]{extra})"


def _segment_sql() -> str:
    cases = " ".join(f"WHEN r_score BETWEEN {r[0]} AND {r[1]} AND f_score BETWEEN {f[0]} AND {f[1]} "
                     f"AND m_score BETWEEN {m[0]} AND {m[1]} THEN '{name.replace(chr(39), chr(39) * 2)}'"
                     for name, r, f, m in SEGMENT_RULES)
    return f"CASE {cases} END"


def duckdb_peer(lake: Path, out: Path, *, as_of: str = AS_OF, time_unit_days: float = 7.0) -> tuple[float, dict]:
    """RFM segments, the CLV summary and the cohort matrix in DuckDB; returns (seconds, results for comparison)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    started = time.monotonic()
    for name in ("silver_transactions", "silver_refunds"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {parquet_of(lake / name, hive_partitioning='true')}")
    con.execute("CREATE VIEW purchases AS SELECT * FROM silver_transactions "
                "WHERE status IS NULL OR status <> 'Cancelled'")
    con.execute(f"""COPY (
        WITH p AS (SELECT customer_id, count(*) AS frequency, sum(amount) AS gross,
                          max(transaction_datetime) AS last_at FROM purchases GROUP BY 1),
             r AS (SELECT customer_id, sum(refund_amount) AS refunded FROM silver_refunds GROUP BY 1),
             b AS (SELECT p.customer_id, date_diff('day', last_at::DATE, DATE '{as_of}') AS recency_days, frequency,
                          gross - coalesce(refunded, 0) AS monetary FROM p LEFT JOIN r USING (customer_id)),
             s AS (SELECT *, least(floor(percent_rank() OVER (ORDER BY recency_days DESC) * 5) + 1, 5) AS r_score,
                          least(floor(percent_rank() OVER (ORDER BY frequency) * 5) + 1, 5) AS f_score,
                          least(floor(percent_rank() OVER (ORDER BY monetary) * 5) + 1, 5) AS m_score FROM b)
        SELECT *, {_segment_sql()} AS customer_segment FROM s) TO '{out}/rfm.parquet' (FORMAT parquet)""")
    end = con.execute(f"SELECT least(max(transaction_datetime)::DATE, DATE '{as_of}') FROM purchases"
                      ).fetchone()[0]
    con.execute(f"""COPY (
        WITH d AS (SELECT customer_id, transaction_datetime::DATE AS day, sum(amount)::DOUBLE AS amount
                   FROM purchases WHERE transaction_datetime::DATE <= DATE '{end}' GROUP BY 1, 2)
        SELECT customer_id, count(*) - 1 AS frequency,
               date_diff('day', min(day), max(day)) / {time_unit_days} AS recency,
               date_diff('day', min(day), DATE '{end}') / {time_unit_days} AS T,
               CASE WHEN count(*) > 1 THEN (sum(amount) - arg_min(amount, day)) / (count(*) - 1) ELSE 0 END
                   AS monetary
        FROM d GROUP BY 1) TO '{out}/clv_summary.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (
        WITH m AS (SELECT DISTINCT customer_id, date_trunc('month', transaction_datetime)::DATE AS month
                   FROM purchases),
             f AS (SELECT customer_id, min(month) AS cohort_month FROM m GROUP BY 1),
             z AS (SELECT cohort_month, count(*) AS cohort_size FROM f GROUP BY 1)
        SELECT cohort_month, date_diff('month', cohort_month, month) AS months_since, cohort_size,
               count(*) AS active_customers, round(count(*) / cohort_size, 4) AS retention_rate
        FROM m JOIN f USING (customer_id) JOIN z USING (cohort_month) GROUP BY 1, 2, 3
    ) TO '{out}/cohorts.parquet' (FORMAT parquet)""")
    seconds = time.monotonic() - started
    results = {
        "segments": dict(con.execute(f"SELECT customer_segment, count(*) FROM '{out}/rfm.parquet' GROUP BY 1"
                                     ).fetchall()),
        "cohorts": sorted(con.execute(f"SELECT cohort_month::VARCHAR, months_since, active_customers "
                                      f"FROM '{out}/cohorts.parquet'").fetchall()),
        "summary_rows": con.execute(f"SELECT count(*) FROM '{out}/clv_summary.parquet'").fetchone()[0],
    }
    return seconds, results


def spark_sql_peer(spark, lake: Path, out: Path, *, as_of: str = AS_OF, time_unit_days: float = 7.0) -> tuple[float, dict]:
    """The peer's three queries in Spark SQL on the same files, in c360's Spark session: what Spark's engine itself
    costs on this machine for exactly the work DuckDB does (no Delta, no model fit, no other table); returns
    (seconds, results for comparison)."""
    started = time.monotonic()
    for name in ("silver_transactions", "silver_refunds"):
        spark.read.parquet(*delta_files(lake / name)).createOrReplaceTempView(name)
    spark.sql("SELECT * FROM silver_transactions WHERE status IS NULL OR status <> 'Cancelled'"
              ).createOrReplaceTempView("purchases")
    spark.sql(f"""
        WITH p AS (SELECT customer_id, count(*) AS frequency, sum(amount) AS gross,
                          max(transaction_datetime) AS last_at FROM purchases GROUP BY 1),
             r AS (SELECT customer_id, sum(refund_amount) AS refunded FROM silver_refunds GROUP BY 1),
             b AS (SELECT p.customer_id, datediff(DATE '{as_of}', CAST(last_at AS DATE)) AS recency_days, frequency,
                          gross - coalesce(refunded, 0) AS monetary FROM p LEFT JOIN r USING (customer_id)),
             s AS (SELECT *, least(floor(percent_rank() OVER (ORDER BY recency_days DESC) * 5) + 1, 5) AS r_score,
                          least(floor(percent_rank() OVER (ORDER BY frequency) * 5) + 1, 5) AS f_score,
                          least(floor(percent_rank() OVER (ORDER BY monetary) * 5) + 1, 5) AS m_score FROM b)
        SELECT *, {_segment_sql()} AS customer_segment FROM s""").write.mode("overwrite").parquet(f"{out}/rfm")
    end = spark.sql(f"SELECT least(CAST(max(transaction_datetime) AS DATE), DATE '{as_of}') FROM purchases"
                    ).first()[0]
    spark.sql(f"""
        WITH d AS (SELECT customer_id, CAST(transaction_datetime AS DATE) AS day, CAST(sum(amount) AS DOUBLE) AS amount
                   FROM purchases WHERE CAST(transaction_datetime AS DATE) <= DATE '{end}' GROUP BY 1, 2)
        SELECT customer_id, count(*) - 1 AS frequency,
               datediff(max(day), min(day)) / {time_unit_days}D AS recency,
               datediff(DATE '{end}', min(day)) / {time_unit_days}D AS T,
               CASE WHEN count(*) > 1 THEN (sum(amount) - min_by(amount, day)) / (count(*) - 1) ELSE 0 END
                   AS monetary
        FROM d GROUP BY 1""").write.mode("overwrite").parquet(f"{out}/clv_summary")
    spark.sql("""
        WITH m AS (SELECT DISTINCT customer_id, CAST(date_trunc('month', transaction_datetime) AS DATE) AS month
                   FROM purchases),
             f AS (SELECT customer_id, min(month) AS cohort_month FROM m GROUP BY 1),
             z AS (SELECT cohort_month, count(*) AS cohort_size FROM f GROUP BY 1)
        SELECT cohort_month, CAST(months_between(month, cohort_month) AS INT) AS months_since, cohort_size,
               count(*) AS active_customers, round(count(*) / cohort_size, 4) AS retention_rate
        FROM m JOIN f USING (customer_id) JOIN z USING (cohort_month) GROUP BY 1, 2, 3
    """).write.mode("overwrite").parquet(f"{out}/cohorts")
    seconds = time.monotonic() - started
    results = {
        "segments": {r[0]: r[1] for r in spark.read.parquet(f"{out}/rfm").groupBy("customer_segment").count()
                     .collect()},
        "cohorts": sorted((str(r[0]), r[1], r[2]) for r in spark.read.parquet(f"{out}/cohorts")
                          .select("cohort_month", "months_since", "active_customers").collect()),
        "summary_rows": spark.read.parquet(f"{out}/clv_summary").count(),
    }
    return seconds, results


def spark_side(lake: Path) -> dict:
    """The same comparisons on c360's gold tables (read by DuckDB from their Delta files)."""
    import duckdb

    con = duckdb.connect()

    def q(table: str, sql: str):
        return con.execute(sql.format(t=parquet_of(lake / table))).fetchall()

    return {
        "segments": dict(q("gold_rfm_segments", "SELECT customer_segment, count(*) FROM {t} GROUP BY 1")),
        "cohorts": sorted(q("gold_retention_cohorts", "SELECT cohort_month::VARCHAR, months_since, active_customers "
                                                     "FROM {t}")),
        "summary_rows": q("gold_customer_clv", "SELECT count(*) FROM {t}")[0][0],
    }


DASHBOARD_LIMIT_S = 120  # our own budget (issue 6 names none): the page a nightly run or --serve rebuilds


def _timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    return _measured(cmd, env, log)[0]


# runs a command as its only child and prints the child's peak resident memory (its largest process's, JVM included)
_PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
         "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True); sys.exit(code)")


def _measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB, of the command's largest process) of one command, its output in ``log``."""
    started = time.monotonic()
    with log.open("w") as fh:
        subprocess.run([sys.executable, "-c", _PEAK, *cmd], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                       check=True)
    seconds = time.monotonic() - started
    peak = [line for line in log.read_text().splitlines() if line.startswith("peak_rss_kib ")][-1]
    return seconds, int(peak.split()[1]) / 2**20


MEMORY_LIMIT_GIB = 3.0  # the embedded refresh's memory goal at 1M customers (issue 43)
REFRESH_LIMIT_S = 60


def bench_gold(customers: int, workdir: Path, figure) -> list[dict]:
    """The refresh at ``customers`` on the embedded engine (the default on one machine) and on Spark (a cluster's
    engine: its reference), the same tables either way; the subset DuckDB computes on each; the dashboard; DuckDB
    and the peer queries in Spark SQL (with and without Comet)."""
    lake, exports = workdir / "gold-lake", workdir / "gold-exports"
    env = dict(os.environ, C360_LAKE_STATE_DIR=str(ROOT / ".c360"))
    synth_s = _timed([sys.executable, "-m", "bench.gold_data", "--lake", str(lake), "--customers", str(customers)],
                     env, workdir / "gold-data.log")
    rows = _last_json(workdir / "gold-data.log")
    c360 = [sys.executable, "-m", "c360", "gold", "--lake", str(lake), "--as-of", AS_OF]
    full_s, full_gib = _measured([*c360, "--engine", "embedded", "--exports", str(exports), "--dashboard",
                                  str(workdir / "gold-dashboard.html")], env, workdir / "gold-full.log")
    spark_exports = workdir / "gold-exports-spark"
    spark_s, spark_gib = _measured([*c360, "--engine", "spark", "--exports", str(spark_exports), "--dashboard",
                                    str(workdir / "gold-dashboard-spark.html")], env, workdir / "gold-full-spark.log")
    differing = differing_exports(exports, spark_exports)
    same = bool(export_csvs(exports)) and not differing
    subset = "gold_rfm_segments,gold_customer_clv,gold_retention_cohorts"
    only = ["--only", subset, "--no-exports", "--no-dashboard"]
    subset_spark_s = _timed([*c360, *only, "--engine", "spark"], env, workdir / "gold-subset-spark.log")
    subset_s = _timed([*c360, *only, "--engine", "embedded"], env, workdir / "gold-subset.log")
    page = workdir / "dashboard.html"
    dash_s = _timed([sys.executable, "-m", "c360", "dashboard", "--lake", str(lake), "--out", str(page)], env,
                    workdir / "dashboard.log")
    duck_s, duck = duckdb_peer(lake, workdir / "duckdb-out")
    ours = spark_side(lake)
    agree = {k: duck[k] == ours[k] for k in duck}
    sql, sql_comet = (_spark_sql_peer_run(lake, workdir, env, accelerator) for accelerator in ("none", "comet"))
    for run in (sql, sql_comet):
        run["agrees"] = {k: _jsonable(duck[k]) == run["results"][k] for k in duck}
    from lakehouse.spark import auto_driver_memory

    params = {"customers": customers, "orders": rows["silver_orders"], "logins": rows["silver_logins"],
              "clickstream_events": rows["silver_clickstream"], "transactions": rows["silver_transactions"],
              "silver_rows": sum(rows.values()), "engine": "embedded (Sail)", "agrees_with_duckdb": agree,
              "silver_synthesis_s": round(synth_s, 1),
              "includes": "16 gold tables + CSV and Parquet exports + the dashboard, engine start-up included"}
    spark_params = {**params, "engine": "spark", "driver_memory": auto_driver_memory(),
                    "same_exports_as_embedded": same, "differing_exports": differing}
    peer = {"name": "DuckDB: RFM + CLV summary + cohort matrix on the same silver Parquet", "value": round(duck_s, 2)}
    subset_params = {**params, "includes": f"{subset} only (CLV with the model fit), no exports"}
    return [
        figure("gold_refresh_1m_seconds", full_s, "s", {**params, "duckdb_ratio": round(full_s / duck_s, 2)},
               {"limit": REFRESH_LIMIT_S}, full_s / REFRESH_LIMIT_S),
        figure("gold_refresh_1m_peak_rss_gib", full_gib, "GiB", params, {"limit": MEMORY_LIMIT_GIB},
               full_gib / MEMORY_LIMIT_GIB),
        # (the Spark run's JVM is not a child this measure sees: only its Python process's memory is)
        figure("gold_refresh_1m_spark_seconds", spark_s, "s",
               {**spark_params, "python_process_peak_rss_gib": round(spark_gib, 2)},
               {"name": "the same refresh on the embedded engine, same run", "value": round(full_s, 1)},
               spark_s / full_s),
        figure("gold_subset_1m_seconds", subset_s, "s", subset_params, peer, subset_s / duck_s),
        figure("gold_subset_1m_spark_seconds", subset_spark_s, "s", {**subset_params, "engine": "spark"}, peer,
               subset_spark_s / duck_s),
        figure("dashboard_1m_seconds", dash_s, "s",
               {"customers": customers, "html_mib": round(page.stat().st_size / 2**20, 2), "engine": "embedded",
                "includes": "c360 dashboard: every view from the gold and stream tables, engine start-up included"},
               {"limit": DASHBOARD_LIMIT_S}, dash_s / DASHBOARD_LIMIT_S),
        figure("gold_peer_queries_spark_sql_seconds", sql["seconds"], "s",
               {"customers": customers, "agrees_with_duckdb": sql["agrees"],
                "includes": "DuckDB's three queries, verbatim but for function names, in Spark SQL on the same files "
                            "in a session configured as c360 gold's; Parquet out; JVM start-up not included"},
               peer, sql["seconds"] / duck_s),
        figure("gold_peer_queries_spark_sql_comet_seconds", sql_comet["seconds"], "s",
               {"customers": customers, "agrees_with_duckdb": sql_comet["agrees"],
                "includes": "the same queries in the same session on Comet's native engine (c360 gold --accelerator "
                            "comet's settings)"},
               peer, sql_comet["seconds"] / duck_s),
    ]


def _spark_sql_peer_run(lake: Path, workdir: Path, env: dict[str, str], accelerator: str) -> dict:
    log = workdir / f"spark-sql-peer-{accelerator}.log"
    _timed([sys.executable, "-m", "bench.gold_bench", "--lake", str(lake), "--out", str(workdir / "spark-sql-out"),
            "--accelerator", accelerator], env, log)
    return _last_json(log)


def _last_json(log: Path):
    """The last JSON object a command printed (its log ends with :func:`_measured`'s memory line)."""
    return json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][-1])


def export_csvs(exports: Path) -> list[str]:
    """A refresh's CSV exports, relative to its ``csv`` folder (spend tiers: one per tier folder)."""
    return sorted(str(p.relative_to(exports / "csv")) for p in (exports / "csv").rglob("*.csv"))


def differing_exports(a: Path, b: Path) -> list[str]:
    """The CSV exports of two refreshes whose rows (in any order; numbers as numbers: ``export.csv_values``) differ,
    or that only one of them wrote."""
    from batch.export import csv_values

    def rows(exports: Path, name: str) -> list[list] | None:
        csv = exports / "csv" / name
        return csv_values(csv) if csv.is_file() else None

    return [n for n in sorted(set(export_csvs(a)) | set(export_csvs(b))) if rows(a, n) != rows(b, n)]


def _jsonable(value):
    """``value`` as it reads back from JSON (tuples become lists, keys strings, dates ISO strings)."""
    return json.loads(json.dumps(value, default=str))


def main(argv: list[str] | None = None) -> int:
    """:func:`spark_sql_peer` in a Spark session configured as ``c360 gold`` configures its own (its ``auto``
    driver memory; the JVM's start is not timed); prints its seconds and results as JSON."""
    ap = argparse.ArgumentParser(description="The Spark SQL run of the DuckDB peer's queries (run by bench_gold).")
    ap.add_argument("--lake", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--accelerator", choices=list(GOLD_ACCELERATORS), default="none")
    args = ap.parse_args(argv)
    from lakehouse import config
    from lakehouse.spark import auto_driver_memory, get_spark

    cfg = config.load(overrides={"lake": {"root": str(args.lake)}, "spark": {"driver_memory": auto_driver_memory()}})
    seconds, results = spark_sql_peer(get_spark(cfg, "c360-bench-spark-sql-peer", accelerator=args.accelerator),
                                      args.lake, args.out)
    print(json.dumps(_jsonable({"seconds": seconds, "results": results})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
