"""The class-data sharing archive of the driver JVM (lakehouse.cds): its key, its options, and that only a whole
archive is ever put in place (a JVM given a file that is not one crashes)."""

import sys

from lakehouse import cds, config
from lakehouse.spark import spark_conf


def test_the_archive_is_keyed_by_the_jars(tmp_path):
    a, b = tmp_path / "a.jar", tmp_path / "b.jar"
    a.write_bytes(b"a")
    b.write_bytes(b"bb")
    one = cds.archive_path(tmp_path / "state", [str(a)])
    assert one == cds.archive_path(tmp_path / "state", [str(a)])
    assert one.parent == (tmp_path / "state" / "jvm").resolve() and one.name.startswith("spark-")
    assert cds.archive_path(tmp_path / "state", [str(a), str(b)]) != one
    a.write_bytes(b"a new build")  # same name, other content
    assert cds.archive_path(tmp_path / "state", [str(a)]) != one


def test_the_driver_maps_an_archive_only_when_there_is_one(tmp_path):
    archive = tmp_path / "spark-x.jsa"
    assert cds.java_options(archive) == "" and cds.java_options(None) == ""
    archive.write_bytes(b"...")
    assert cds.java_options(archive).split()[0] == f"-XX:SharedArchiveFile={archive}"
    conf = spark_conf(config.load(environ={}), [], java_options=cds.java_options(archive))
    options = conf["spark.driver.extraJavaOptions"].split()
    assert options[0].startswith("-Dlog4j2.configurationFile=")  # c360's own option stays
    assert f"-XX:SharedArchiveFile={archive}" in options and "-Xlog:cds=off" in options


def test_only_a_whole_archive_is_ever_put_in_place(tmp_path):
    cfg = config.load(environ={}, overrides={"lake": {"state_dir": str(tmp_path / "state")}})
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"a")
    jvm_dir = tmp_path / "state" / "jvm"
    # a real (small) archive that the workload's JVM wrote, then cut short as when it dies while writing:
    # a JVM given that file crashes
    cut_short = [sys.executable, "-c", (
        "import subprocess, sys; p = sys.argv[1]; "
        "subprocess.run(['java', f'-XX:ArchiveClassesAtExit={p}', '-version'], capture_output=True, check=True); "
        "data = open(p, 'rb').read(); open(p + '.whole', 'wb').write(data); "
        "import os; os.chmod(p, 0o644); open(p, 'wb').write(data[:len(data) // 2])")]
    assert cds.build(cfg, [str(jar)], workload=cut_short) is None
    assert not list(jvm_dir.glob("*.jsa")) and not list(jvm_dir.glob("*.partial"))  # nothing left but the copy
    whole = next(jvm_dir.glob("*.whole"))
    # the same archive whole is put in place, under the key of the JDK and the jars
    put_back = [sys.executable, "-c", f"import shutil, sys; shutil.copy({str(whole)!r}, sys.argv[1])"]
    archive = cds.build(cfg, [str(jar)], workload=put_back)
    assert archive == cds.archive_path(cfg.lake.state_dir, [str(jar)]) and archive.is_file()
    assert cds.build(cfg, [str(jar)], workload=[sys.executable, "-c", "raise SystemExit(1)"]) == archive  # kept
    # a file that is no archive at all, or no file: nothing is put in place
    other = tmp_path / "b.jar"
    other.write_bytes(b"b")
    for workload in ([sys.executable, "-c", "import sys; open(sys.argv[1], 'wb').write(b'x' * 4096)"],
                     [sys.executable, "-c", "import sys; sys.exit('boom')"]):
        assert cds.build(cfg, [str(other)], workload=workload) is None
    assert list(jvm_dir.glob("*.jsa")) == [archive]
