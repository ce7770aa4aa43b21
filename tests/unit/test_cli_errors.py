"""A user's mistake gets one line on stderr and a non-zero exit: never a traceback, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from c360.cli import build_parser
from lakehouse.kafka_local import free_port


def run_cli(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "c360", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("c360"), lines[0]
    assert text in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "text"), [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["generate", "--scale", "0"], "argument --scale: must be positive"),
    (["generate", "--scale", "many"], "argument --scale: not a whole number"),
    (["replay", "--rate", "fast"], "argument --rate: not a number"),
    (["gold", "--as-of", "2025-13-01"], "not a date"),
    (["gold", "--accelerator", "gpu"], "argument --accelerator: invalid choice: 'gpu'"),
    (["kafka", "restart"], "invalid choice: 'restart'"),
    (["stream", "--sources", ","], "expected a comma-separated list"),
    (["clv", "fit"], "the following arguments are required: --transactions"),
    (["clv", "fit", "--transactions", "t.csv", "--customer-col", "c", "--date-col", "d", "--amount-col", "a",
      "--time-unit", "M"], "argument --time-unit: invalid choice: 'M'"),
    (["clv", "predict"], "invalid choice: 'predict'"),
    (["dashboard", "--port", "70000"], "argument --port: not a TCP port"),
    (["dashboard", "--port", "http"], "argument --port: not a port number"),
    (["dashboard", "--refresh", "0"], "argument --refresh: must be positive"),
    (["dashboard", "--serve", "--out", "d.html"], "argument --out: not allowed with argument --serve"),
    (["forget", "C1", "--retention-hours", "-1"], "argument --retention-hours: must be at least 0"),
    (["gold", "--conf", "spark.executor.memory"], "argument --conf: expected KEY=VALUE"),
])
def test_bad_arguments(args, text):
    assert_one_line_error(run_cli(*args), 2, text)


@pytest.mark.parametrize(("args", "text"), [
    (["forget"], "give the id of at least one customer to forget"),
    (["forget", " "], "blank ids are not allowed"),
    (["forget", "--vacuum", "C1"], "--vacuum takes no customer ids"),
    (["forget", "--ids-file", "/nope/ids.txt"], "cannot read --ids-file /nope/ids.txt"),
    (["stream", "--trigger", "fast"], "stream.trigger_interval must be a time like '5 seconds'"),
    (["gold", "--conf", "spark.master=local[2]"], "c360 sets spark.master itself: set spark.master"),
    (["stream", "--conf", "spark.hadoop.fs.s3a.secret.key=abc"], "spark.hadoop.fs.s3a.secret.key looks like a secret"),
])
def test_mistakes_fail_before_spark_starts(tmp_path, args, text):
    assert_one_line_error(run_cli(*args, "--lake", str(tmp_path)), 1, text)
    assert not any(tmp_path.iterdir())  # nothing was created


def test_unknown_gold_table(tmp_path):
    assert_one_line_error(run_cli("gold", "--lake", str(tmp_path), "--only", "gold_nope"), 1,
                          "unknown gold table 'gold_nope'")


def test_comet_on_a_platform_it_does_not_run_on_is_refused_before_spark_starts(tmp_path):
    code = ("import platform, sys; platform.system = lambda: 'Darwin'; platform.machine = lambda: 'arm64'; "
            "from c360.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    proc = subprocess.run([sys.executable, "-c", code, "gold", "--accelerator", "comet", "--lake", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert_one_line_error(proc, 1, "Comet's native library is built for Linux on x86_64 and aarch64 only, not "
                                   "Darwin arm64: set gold.accelerator to auto")
    assert not any(tmp_path.iterdir())


def test_dashboard_port_in_use_fails_before_spark_starts(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("dashboard", "--serve", "--port", str(port), "--lake", str(tmp_path))
    assert_one_line_error(proc, 1, f"cannot serve the dashboard on 127.0.0.1:{port}: the port is in use")


def test_missing_input_directory(tmp_path):
    assert_one_line_error(run_cli("replay", "--input", str(tmp_path / "nope")), 1, "input directory not found")


def test_directory_without_source_files(tmp_path):
    assert_one_line_error(run_cli("replay", "--input", str(tmp_path)), 1, "no source files in")


def test_missing_named_source_file(tmp_path):
    (tmp_path / "customers.csv").write_text("customer_id\n")
    assert_one_line_error(run_cli("replay", "--input", str(tmp_path), "--sources", "customers,logins"), 1,
                          "missing file(s)")


def test_bad_config_value_from_environment():
    assert_one_line_error(run_cli("config", env={"C360_KAFKA_PARTITIONS": "many"}), 1,
                          "bad config value for kafka.partitions")


def test_unknown_key_in_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[spark]\nmastr = 'x'\n")
    assert_one_line_error(run_cli("config", "--config", str(f)), 1, "unknown config key spark.mastr")


@pytest.mark.parametrize("command", [["replay"], ["stream", "--available-now"]])
def test_unreachable_broker_fails_fast_with_advice(tmp_path, command):
    (tmp_path / "customers.csv").write_text("customer_id,status\nC1,Active\n")
    port = free_port()
    proc = run_cli(*command, "--bootstrap", f"127.0.0.1:{port}", "--lake", str(tmp_path / "lake"),
                   env={"C360_KAFKA_CONNECT_TIMEOUT_S": "2", "C360_LAKE_DATA_DIR": str(tmp_path)})
    assert_one_line_error(proc, 1, f"no Kafka broker answers at 127.0.0.1:{port}")
    assert "C360_KAFKA_BOOTSTRAP" in proc.stderr


def test_kafka_status_of_a_stopped_local_broker(tmp_path):
    proc = run_cli("kafka", "status", env={"C360_LAKE_STATE_DIR": str(tmp_path),
                                          "C360_KAFKA_LOCAL_PORT": str(free_port())})
    assert proc.returncode == 3 and "not running" in proc.stdout


def test_kafka_start_refuses_when_an_external_cluster_is_configured():
    assert_one_line_error(run_cli("kafka", "start", "--bootstrap", "kafka.example:9092"), 1,
                          "kafka.bootstrap is set")


def test_missing_maven_says_what_to_install(tmp_path):
    proc = run_cli("kafka", "start", env={"PATH": "/nonexistent", "C360_LAKE_STATE_DIR": str(tmp_path),
                                          "C360_KAFKA_LOCAL_PORT": str(free_port()),
                                          "C360_KAFKA_LOCAL_CONTROLLER_PORT": str(free_port())})
    assert_one_line_error(proc, 1, "'mvn' not found on PATH")


def test_every_command_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert set(commands) >= {"setup", "config", "kafka", "generate", "replay", "stream", "gold", "dashboard",
                             "forget", "demo", "maintain"}
    for name in commands:
        proc = run_cli(name, "--help")
        assert proc.returncode == 0 and f"usage: c360 {name}" in proc.stdout


def test_a_lake_path_that_cannot_be_written_is_refused_before_spark_starts(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args, what in ((["stream", "--lake", str(blocker / "lake")], "lake"),
                       (["stream", "--checkpoints", str(blocker / "ck")], "checkpoints"),
                       (["gold", "--lake", str(blocker / "lake")], "lake"),
                       (["forget", "C1", "--lake", str(blocker / "lake")], "lake"),
                       (["maintain", "--lake", str(blocker / "lake")], "lake")):
        proc = run_cli(*args, env={"C360_LAKE_ROOT": str(tmp_path / "lake"),
                                   "C360_LAKE_CHECKPOINT_ROOT": str(tmp_path / "ck"),
                                   "C360_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
        assert_one_line_error(proc, 1, f"cannot write the {what} at {blocker}/")
        assert "(Not a directory)" in proc.stderr


def test_storage_errors_are_recognised_in_everything_an_exception_says():
    from lakehouse.errors import error_text, storage_error

    class Captured(Exception):  # like pyspark's captured JVM exceptions: the cause is in the stack trace
        desc = "Job aborted due to stage failure"
        _stackTrace = "org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device\n\tat ..."

    try:
        try:
            raise Captured("Job aborted")
        except Captured as inner:
            raise RuntimeError("writing silver_orders failed") from inner
    except RuntimeError as exc:
        text = error_text(exc)
    message = storage_error(text, "the lake")
    assert message.startswith("the disk is full (No space left on device) while writing the lake: free space")
    assert storage_error("java.io.IOException: Read-only file system", "x").startswith("the file system is read-only")
    assert storage_error("TimeoutException: no broker", "x") is None


def test_setup_says_why_auto_fetches_no_comet_where_it_cannot_load(tmp_path, monkeypatch, capsys):
    from c360 import cli
    from lakehouse import jars

    fetched = []

    def fetch(state_dir, which):
        fetched.append(which)
        (tmp_path / f"{which}.jar").write_bytes(b"x")
        return [tmp_path / f"{which}.jar"]

    monkeypatch.setattr(jars, "ensure_jars", fetch)
    monkeypatch.setattr("platform.libc_ver", lambda *a: ("glibc", "2.28"))
    for key, value in (("GOLD_ACCELERATOR", "auto"), ("SPARK_CLASS_DATA_SHARING", "false"),
                       ("LAKE_STATE_DIR", str(tmp_path))):
        monkeypatch.setenv(f"C360_{key}", value)
    assert cli.main(["setup"]) == 0
    assert fetched == ["spark", "kafka"]
    assert capsys.readouterr().out.splitlines()[2] == (
        "comet: not fetched (Comet's native library needs glibc 2.30 or newer, and this Linux has glibc 2.28); "
        "gold.accelerator auto runs on Spark's own engine")


@pytest.mark.parametrize(("accelerator", "code"), [("auto", 0), ("comet", 1)])
def test_setup_goes_on_without_comet_for_auto_but_not_for_comet(tmp_path, monkeypatch, capsys, accelerator, code):
    from c360 import cli
    from lakehouse import jars
    from lakehouse.errors import C360Error

    def fetch(state_dir, which):
        if which == "comet":
            raise C360Error("mvn could not fetch the comet jars (is Maven Central reachable?): offline")
        (tmp_path / f"{which}.jar").write_bytes(b"x")
        return [tmp_path / f"{which}.jar"]

    monkeypatch.setattr(jars, "ensure_jars", fetch)
    monkeypatch.setattr("lakehouse.spark.comet_blocker", lambda *a: None)
    for key, value in (("GOLD_ACCELERATOR", accelerator), ("SPARK_CLASS_DATA_SHARING", "false"),
                       ("LAKE_STATE_DIR", str(tmp_path))):
        monkeypatch.setenv(f"C360_{key}", value)
    assert cli.main(["setup"]) == code
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [f"spark: 1 jars, 0 MiB in {tmp_path}/jars/spark",
                                    f"kafka: 1 jars, 0 MiB in {tmp_path}/jars/kafka"]
    if code == 0:
        assert out.splitlines()[2] == ("comet: not fetched (mvn could not fetch the comet jars (is Maven Central "
                                       "reachable?): offline); gold.accelerator auto runs on Spark's own engine "
                                       "until it is")
    else:
        assert err.strip() == "c360: error: mvn could not fetch the comet jars (is Maven Central reachable?): offline"


def test_a_table_mixing_timestamp_types_gets_the_fix_in_one_line():
    from lakehouse.errors import mixed_timestamps_error

    # the embedded engine's words (the soak's second gold run, 2026-12-07), inside a longer error text
    text = ("SparkRuntimeException: Schema error: Fail to merge schema field 'refund_datetime' because the from "
            "data_type = Timestamp(µs) does not equal Timestamp(µs, \"UTC\")\n\tat ...")
    message = mixed_timestamps_error(text)
    assert message is not None and "\n" not in message
    assert "'refund_datetime'" in message and 'batch.engine = "spark"' in message
    assert mixed_timestamps_error("Schema error: something else") is None
