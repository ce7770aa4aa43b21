"""The ``c360`` command line: one entry point for every job.

Errors a user can fix print one line (``c360: error: ...``) and exit non-zero; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date
from pathlib import Path

from lakehouse.config import BATCH_ENGINES as ENGINES
from lakehouse.config import GOLD_ACCELERATORS
from lakehouse.errors import C360Error, check_writable, error_text, mixed_timestamps_error, storage_error
from lakehouse.quality import RunQuality

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _spark_setting(text: str) -> tuple[str, str]:
    """An argparse type: ``KEY=VALUE``, as spark-submit's --conf takes it."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. spark.executor.memory=8g: {text!r}")
    return key.strip(), value


def _positive(number_type: type, name: str, minimum_allowed: bool = False):
    """An argparse type: a number of ``number_type`` above zero (or at least zero)."""

    def parse(text: str):
        try:
            value = number_type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {name}: {text!r}") from None
        if value < 0 or (value == 0 and not minimum_allowed):
            raise argparse.ArgumentTypeError(f"must be {'at least 0' if minimum_allowed else 'positive'}: {text!r}")
        return value

    return parse


_positive_int = _positive(int, "a whole number")
_non_negative_int = _positive(int, "a whole number", minimum_allowed=True)
_positive_float = _positive(float, "a number")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("configuration (overrides the config file and C360_* variables)")
    g.add_argument("--config", metavar="FILE", help="a TOML file overlaying lakehouse/defaults.toml")
    g.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default: the local broker)")
    g.add_argument("--lake", metavar="PATH|URI", help="lake root for the Delta tables")
    g.add_argument("--checkpoints", metavar="PATH|URI", help="streaming checkpoint root")
    g.add_argument("--master", metavar="URL", help="Spark master (default local[*])")
    g.add_argument("--driver-memory", metavar="SIZE", help="Spark driver memory, e.g. 4g")
    g.add_argument("--conf", metavar="KEY=VALUE", type=_spark_setting, action="append",
                   help="any other Spark setting, e.g. spark.executor.memory=8g (repeatable; adds to spark.conf)")
    g.add_argument("-v", "--verbose", action="store_true", help="log more")
    g.add_argument("--debug", action="store_true", help="show full tracebacks on errors")

    p = _Parser(prog="c360", description="c360: a near-real-time Customer 360 engine "
                "(Kafka -> Spark Structured Streaming -> Delta bronze/silver/gold).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common])

    cmd("setup", "fetch the JVM jars (Delta, Spark's Kafka connector, the Kafka broker; Comet when gold.accelerator is "
        "comet, or auto where Comet runs) with Maven, once")
    cmd("config", "print the effective configuration")

    k = cmd("kafka", "run the embedded local Kafka broker (KRaft mode)")
    k.add_argument("action", choices=["start", "stop", "status"])

    gen = cmd("generate", "write a synthetic, realistically dirty data set (replaces the previous one)")
    gen.add_argument("--out", metavar="DIR", help="output directory (default: lake.data_dir)")
    gen.add_argument("--scale", type=_positive_int, default=1000, help="number of customers (default 1000)")
    gen.add_argument("--seed", type=int, default=42, help="random seed: same seed, same bytes (default 42)")
    gen.add_argument("--dirty-rate", type=float, default=0.02, help="share of records given each kind of dirt")
    gen.add_argument("--start", default="2023-01-01", help="first registration day (YYYY-MM-DD)")
    gen.add_argument("--end", default="2024-12-31", help="last activity day (YYYY-MM-DD)")
    gen.add_argument("--append", action="store_true",
                     help="add one new day of activity to an earlier output of the same parameters")

    prof = cmd("profile", "read a sample of your export(s) and propose the source mapping that reads them "
                          "(TOML on stdout, or --out FILE)")
    prof.add_argument("files", nargs="+", metavar="FILE", help="CSV or JSON-lines files")
    prof.add_argument("--out", metavar="FILE", help="write the proposed mapping(s) here (a config file to edit)")
    prof.add_argument("--rows", type=_positive_int, default=20_000, help="rows sampled per file (default 20000)")
    prof.add_argument("--source", metavar="NAME", help="map onto this c360 source instead of the likeliest")

    r = cmd("replay", "send source files to Kafka (one JSON record per row, key = customer id)")
    r.add_argument("--input", metavar="DIR", help="directory of source files (default: lake.data_dir)")
    r.add_argument("--sources", type=_csv_list, metavar="A,B", help="only these sources (e.g. customers,logins)")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive_float, metavar="EPS", help="at most this many events per second")
    pace.add_argument("--speedup", type=_positive_float, metavar="X",
                      help="event-time replay, X times real time (3600: an hour a second), sources interleaved")
    r.add_argument("--interleave", action="store_true",
                   help="send every file at once, each in proportion to its length (default: one after another)")
    r.add_argument("--resume", action="store_true", help="continue from the last acknowledged position")
    r.add_argument("--rejects", metavar="FILE", help="where unreadable rows go (JSON lines)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = cmd("stream", "run the streaming app: Kafka -> bronze -> silver (+ quarantine)")
    s.add_argument("--available-now", action="store_true", help="process what is in Kafka, then stop")
    s.add_argument("--sources", type=_csv_list, metavar="A,B", help="only these sources")
    s.add_argument("--trigger", metavar="INTERVAL", help="micro-batch interval, e.g. '10 seconds'")

    mnt = cmd("maintain", "compact and VACUUM the stream's tables now (a running stream does it every "
                          "stream.maintenance_interval_minutes); safe while it runs")
    mnt.add_argument("--reorder", action="store_true",
                     help="first rewrite each event table whole in event-time order: once, for a lake compacted "
                          "before 2026-12-07, whose files each span all history (every merge read them all)")

    gold = cmd("gold", "refresh the gold tables from one consistent silver snapshot")
    gold.add_argument("--as-of", type=_date, metavar="YYYY-MM-DD", help="measure 'days since' to this day (default today)")
    gold.add_argument("--only", type=_csv_list, metavar="TABLE,...", help="refresh only these gold tables")
    gold.add_argument("--exports", metavar="DIR", help="where the CSV/Parquet exports go (default: gold.export_dir)")
    gold.add_argument("--no-exports", action="store_true", help="write the gold tables only")
    gold.add_argument("--no-mask", action="store_true", help="export emails and phones unmasked (PII!)")
    gold.add_argument("--dashboard", metavar="FILE", help="where the refreshed dashboard goes (default: dashboard.file)")
    gold.add_argument("--no-dashboard", action="store_true", help="do not refresh the dashboard at the end")
    gold.add_argument("--accelerator", choices=list(GOLD_ACCELERATORS),
                      help="run on Spark's own engine, on Apache DataFusion Comet's native one, or on Comet where it "
                           "runs (auto) (default: gold.accelerator)")
    gold.add_argument("--engine", choices=list(ENGINES), help=ENGINE_HELP)

    dash = cmd("dashboard", "write the dashboard (one self-contained HTML file), or serve it on localhost")
    where = dash.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help="the HTML file to write (default: dashboard.file)")
    where.add_argument("--serve", action="store_true",
                       help="serve it on dashboard.host:port, the streaming views refreshed while c360 stream runs")
    dash.add_argument("--host", metavar="ADDR", help="--serve: listen on this address (default 127.0.0.1)")
    dash.add_argument("--port", type=_port, metavar="N", help="--serve: TCP port (default 8360; 0 = any free)")
    dash.add_argument("--refresh", type=_positive_float, metavar="SECONDS",
                      help="--serve: how often the streaming views refresh (default dashboard.refresh_seconds)")
    dash.add_argument("--no-mask", action="store_true", help="show emails and phones unmasked (PII!)")
    dash.add_argument("--engine", choices=list(ENGINES), help=ENGINE_HELP)

    clv = cmd("clv", "the CLV model on its own (BG/NBD + Gamma-Gamma)")
    clv.add_argument("action", choices=["fit"], help="fit: fit both models to a transaction file, print JSON")
    clv.add_argument("--transactions", metavar="FILE", required=True, help="a CSV (or .parquet) of transactions")
    clv.add_argument("--customer-col", required=True, metavar="COL", help="the customer id column")
    clv.add_argument("--date-col", required=True, metavar="COL", help="the transaction date or time column")
    clv.add_argument("--amount-col", metavar="COL", help="the transaction amount column")
    clv.add_argument("--quantity-col", metavar="COL", help="instead of --amount-col: a quantity column, with ...")
    clv.add_argument("--price-col", metavar="COL", help="... a unit price column (amount = quantity x price)")
    clv.add_argument("--date-format", metavar="FMT", action="append",
                     help="strftime format of the dates, e.g. %%d-%%m-%%Y; repeatable, tried in order (default: ISO "
                          "8601, else inferred; a date that reads as two days, day-first or month-first, is refused)")
    clv.add_argument("--observation-end", type=_date, metavar="YYYY-MM-DD",
                     help="end of the observation period (default: the last transaction day)")
    clv.add_argument("--time-unit", choices=["D", "W", "d", "w"], default="D",
                     help="D: days; W: weeks = days / 7 (fractional, not whole periods)")
    clv.add_argument("--skip-bad-rows", action="store_true",
                     help="leave out malformed lines and unreadable dates or amounts, counted in the output's "
                          "\"rows\" (default: refuse the file, saying where)")

    f = cmd("forget", "erase customers from every bronze, silver and gold table, the exports and the dashboard "
                      "(right to be forgotten), audited in ops_forget_requests")
    f.add_argument("ids", nargs="*", metavar="CUSTOMER_ID", help="the customers to forget")
    f.add_argument("--ids-file", metavar="FILE", help="more ids, one per line")
    f.add_argument("--reason", default="", metavar="TEXT", help="recorded in the audit table, e.g. a ticket number")
    f.add_argument("--retention-hours", type=_non_negative_int, metavar="N",
                   help="VACUUM keeps unreferenced files this long (default stream.vacuum_retention_hours); "
                        "0 deletes them now: only when nothing else reads or writes the lake")
    f.add_argument("--dry-run", action="store_true", help="count the rows that would be erased; change nothing")
    f.add_argument("--vacuum", action="store_true",
                   help="no ids: VACUUM every table and mark the requests whose files are now gone (run daily)")

    d = cmd("demo", "the whole pipeline on the local broker and local Delta tables, then where to look")
    d.add_argument("--scale", type=_positive_int, default=2000, help="number of customers (default 2000)")
    d.add_argument("--keep-broker", action="store_true", help="leave the local broker running afterwards")
    return p


ENGINE_HELP = ("embedded: Sail, in this process, no JVM (fast on one machine); spark: Apache Spark (a cluster's); "
               "auto: embedded with a local master, else Spark (default: batch.engine)")


def load_config(args: argparse.Namespace):
    from lakehouse import config

    overrides = {
        "kafka": {"bootstrap": args.bootstrap},
        "lake": {"root": args.lake, "checkpoint_root": args.checkpoints},
        "spark": {"master": args.master, "driver_memory": args.driver_memory,
                  "conf": dict(args.conf) if args.conf else None},
    }
    if getattr(args, "trigger", None):
        overrides["stream"] = {"trigger_interval": args.trigger}
    if args.command in ("gold", "dashboard"):
        overrides["batch"] = {"engine": args.engine}
    if args.command == "gold":
        overrides["gold"] = {"export_dir": args.exports, "mask_pii": False if args.no_mask else None,
                             "driver_memory": args.driver_memory, "accelerator": args.accelerator}
        overrides["dashboard"] = {"file": args.dashboard}
    if args.command == "dashboard":
        overrides["dashboard"] = {"file": args.out, "host": args.host, "port": args.port,
                                  "refresh_seconds": args.refresh, "mask_pii": False if args.no_mask else None}
    return config.load(args.config, overrides=overrides)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("py4j", "urllib3", "faker"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    # librdkafka logs every refused connection; c360 reports what matters in one line itself
    logging.getLogger("librdkafka").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())


def run_command(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if args.command == "config":
        from lakehouse.config import as_toml

        print(as_toml(cfg), end="")
        return 0
    if args.command == "setup":
        from lakehouse.jars import ensure_jars, jar_dir
        from lakehouse.spark import comet_blocker, resolve_accelerator

        comet = resolve_accelerator(cfg.gold.accelerator) == "comet"
        for which in ("spark", "kafka", *(["comet"] if comet else [])):
            try:
                jars = ensure_jars(cfg.lake.state_dir, which)
            except C360Error as exc:
                if which != "comet" or cfg.gold.accelerator != "auto":
                    raise
                print(f"comet: not fetched ({exc}); gold.accelerator auto runs on Spark's own engine until it is")
                continue
            size = sum(j.stat().st_size for j in jars) / 2**20
            print(f"{which}: {len(jars)} jars, {size:.0f} MiB in {jar_dir(cfg.lake.state_dir, which)}")
        if cfg.gold.accelerator == "auto" and not comet:
            print(f"comet: not fetched ({comet_blocker()}); gold.accelerator auto runs on Spark's own engine")
        if cfg.spark.class_data_sharing:
            from lakehouse import cds

            spark_jars = [str(j) for j in ensure_jars(cfg.lake.state_dir, "spark")]
            archive = cds.archive_path(cfg.lake.state_dir, spark_jars)
            if archive is not None and not archive.is_file():
                print("making the Spark driver's class-data sharing archive (once, about 35 s)", flush=True)
            archive = cds.build(cfg, spark_jars)
            if archive is not None:
                print(f"class-data sharing archive: {archive.stat().st_size / 2**20:.0f} MiB in {archive}")
        return 0
    if args.command == "kafka":
        from lakehouse.kafka_local import LocalKafka

        broker = LocalKafka.from_config(cfg)
        if args.action == "start":
            if not cfg.kafka.embedded:
                raise C360Error(f"kafka.bootstrap is set ({cfg.kafka.bootstrap}): c360 uses that cluster and "
                                f"starts no local broker; unset C360_KAFKA_BOOTSTRAP to use the local one")
            print(broker.start().describe())
        elif args.action == "stop":
            print("local Kafka broker stopped" if broker.stop() else "local Kafka broker was not running")
        else:
            status = broker.status()
            print(status.describe())
            return 0 if status.running else 3
        return 0
    if args.command == "generate":
        from producers.generate import GenerateParams, generate

        out = args.out or cfg.lake.data_dir
        summary = generate(out, GenerateParams(scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate,
                                               start=args.start, end=args.end), append=args.append)
        print(f"wrote {sum(summary.rows.values())} rows ({summary.events} events) in {len(summary.rows)} files "
              f"to {out}; ground truth in {Path(out) / '_labels'}")
        return 0
    if args.command == "profile":
        from producers.profile import profile

        found = profile(args.files, rows=args.rows, source=args.source, out=args.out,
                        defaults=cfg.stream.timestamp_formats)
        for p in found:
            print(p.describe(), file=sys.stderr)
            for question in p.questions:
                print(f"to decide: {p.path.name}: {question}", file=sys.stderr)
        if args.out:
            print(f"proposed mapping written to {args.out}: edit it, then pass it with --config", file=sys.stderr)
        else:
            print("\n".join(p.toml() for p in found), end="")
        return 0
    if args.command == "replay":
        from producers.replay import replay

        summary = replay(cfg, args.input or cfg.lake.data_dir, sources=args.sources, rate=args.rate,
                         speedup=args.speedup, interleave=args.interleave, resume=args.resume,
                         rejects_file=args.rejects, progress=not args.no_progress)
        print(summary.describe())
        for line in summary.quality_lines():
            print(f"data quality: {line}", file=sys.stderr)
        if summary.interrupted:
            return 130
        if summary.unusable:
            print(f"c360: error: no row of {', '.join(summary.unusable)} could be read (reasons above; the rows are "
                  f"in {summary.rejects_file}): fix the file or its mapping (docs/input-contract.md)", file=sys.stderr)
            return 1
        return 1 if summary.failed else 0
    if args.command == "stream":
        from streaming import app

        check_writable(cfg.lake.root, "lake", "--lake")
        check_writable(cfg.lake.checkpoint_root, "checkpoints", "--checkpoints")
        quality = RunQuality()
        progress = app.run(cfg, available_now=args.available_now, sources=args.sources, quality=quality)
        print(f"stream stopped; queries: {', '.join(progress) or 'none'}")
        return _report_quality(quality, cfg.stream.quarantine_failure_share)
    if args.command == "maintain":
        from lakehouse.engine import run_below_stream
        from streaming import ops

        run_below_stream(cfg.batch.nice)
        check_writable(cfg.lake.root, "lake", "--lake")
        started = time.monotonic()
        done = ops.maintain_lake(cfg, reorder=args.reorder)
        reordered = f"{done['reordered']} event tables put in event-time order, " if args.reorder else ""
        print(f"{done['tables']} tables compacted and vacuumed in {time.monotonic() - started:.1f}s: {reordered}"
              f"{done['files_deleted']} old files deleted (no version of the last "
              f"{cfg.stream.vacuum_retention_hours} h needs them)")
        for line in done["failed"]:
            print(f"c360: error: maintenance failed on {line}", file=sys.stderr)
        return 1 if done["failed"] else 0
    if args.command == "gold":
        from batch import gold
        from lakehouse.engine import run_below_stream

        run_below_stream(cfg.batch.nice)
        check_writable(cfg.lake.root, "lake", "--lake")
        if not args.no_exports:
            check_writable(cfg.gold.export_dir, "exports folder", "--exports")
        started = time.monotonic()
        refresh = cfg.dashboard.refresh_after_gold and not args.no_dashboard
        results = gold.run(cfg, as_of=args.as_of, only=args.only, exports=not args.no_exports)
        _print_table([(r.table, r.rows, f"{r.seconds:.1f}s", r.path) for r in results],
                     ("table", "rows", "took", "path"))
        exported = "" if args.no_exports else f"; exports in {cfg.gold.export_dir}"
        print(f"{len(results)} gold tables refreshed in {time.monotonic() - started:.1f}s{exported}", flush=True)
        for line in gold.quality_lines(cfg):
            print(f"data quality (silver, since the lake began): {line}", file=sys.stderr)
        if refresh:
            print(f"dashboard refreshed: {gold.refresh_dashboard(cfg).resolve()}")
        return 0
    if args.command == "dashboard":
        if args.serve:
            from batch import dashboard_serve

            return dashboard_serve.serve(cfg)
        from batch import dashboard
        from lakehouse.engine import get_session

        started = time.monotonic()
        out = dashboard.write(get_session(cfg, "c360-dashboard"), cfg)
        print(f"dashboard written in {time.monotonic() - started:.1f}s: {out.resolve()} "
              "(open it in a browser; it works offline)")
        return 0
    if args.command == "clv":
        from batch import clv_cli

        report = clv_cli.fit_file(args.transactions, customer_col=args.customer_col, date_col=args.date_col,
                                  amount_col=args.amount_col, quantity_col=args.quantity_col, price_col=args.price_col,
                                  date_formats=args.date_format, observation_end=args.observation_end,
                                  time_unit=args.time_unit.upper(), skip_bad_rows=args.skip_bad_rows)
        print(json.dumps(report, indent=2))
        for warning in report["warnings"]:
            print(f"c360: warning: {warning}", file=sys.stderr)
        return 0
    if args.command == "forget":
        check_writable(cfg.lake.root, "lake", "--lake")
        return _forget(cfg, args)
    if args.command == "demo":
        from c360 import demo

        return demo.run(cfg, scale=args.scale, keep_broker=args.keep_broker)
    raise AssertionError(args.command)


def _report_quality(quality, share: float) -> int:
    """Print what the run quarantined or kept with unlisted values, per source; 1 when a source reached the
    quarantined share that fails a run (stream.quarantine_failure_share)."""
    for line in quality.lines():
        print(f"data quality: {line}", file=sys.stderr)
    failing = quality.failing(share)
    if failing:
        q = quality.sources[failing[0]]
        what = "all" if q.quarantined == q.read else f"{q.quarantined} of"
        print(f"c360: error: {what} {q.read} records of {', '.join(failing)} were quarantined: the run could not use "
              f"that source's data (fix above; stream.quarantine_failure_share = {share:g})", file=sys.stderr)
        return 1
    return 0


def _forget(cfg, args: argparse.Namespace) -> int:
    from batch import forget

    ids = list(args.ids)
    if args.ids_file:
        try:
            ids += [line.strip() for line in Path(args.ids_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise C360Error(f"cannot read --ids-file {args.ids_file}: {exc.strerror}") from None
    if args.vacuum:
        if ids:
            raise C360Error("--vacuum takes no customer ids: it vacuums every table")
        marked, tables = forget.vacuum_due(cfg)
        print(f"vacuumed {len(tables)} tables; {marked} forget request(s) now physically gone")
        return 0
    result = forget.forget(cfg, ids, reason=args.reason, retention_hours=args.retention_hours, dry_run=args.dry_run)
    rows = [(t, n) for t, n in result.rows_erased.items() if n]
    _print_table(rows or [("(none)", 0)], ("table", "rows would be erased" if result.dry_run else "rows erased"))
    total = sum(result.rows_erased.values())
    if result.dry_run:
        print(f"dry run: {total} rows of {len(ids)} customer(s) in {len(rows)} tables; nothing changed")
        return 0
    print(f"erased {total} rows of {len(ids)} customer(s) from {len(rows)} tables; "
          f"{len(result.exports)} exports rewritten" + (f"; dashboard rewritten: {result.dashboard}"
                                                          if result.dashboard else ""))
    print(f"audited as request {result.request_id} in {forget.AUDIT_TABLE}; the old files holding them are deleted "
          f"by VACUUM from {result.physically_gone_by:%Y-%m-%d %H:%M} UTC (`c360 forget --vacuum`)")
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "desc", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:400]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return run_command(args)
    except C360Error as exc:
        if args.debug:
            raise
        print(f"c360: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("c360: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, the trace with --debug
        if args.debug:
            raise
        text = error_text(exc)
        known = storage_error(text, "the lake, its checkpoints or exports") or mixed_timestamps_error(text)
        if known:
            print(f"c360: error: {known}", file=sys.stderr)
            return 1
        print(f"c360: error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the trace)",
              file=sys.stderr)
        return 1
