"""The test session's Spark driver maps the class-data sharing archive `c360 setup` made (`make test` runs it)."""

import re
import shutil
import subprocess

from lakehouse import cds
from lakehouse.jars import ensure_jars
from tests.conftest import STATE_DIR


def test_the_driver_jvm_maps_the_archive_setup_made(spark):
    jars = [str(p) for p in ensure_jars(STATE_DIR, "spark")]
    archive = cds.archive_path(STATE_DIR, jars)
    assert archive is not None and archive.is_file(), "no class-data sharing archive: run `c360 setup`"
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    info = subprocess.run([shutil.which("jcmd") or "jcmd", str(pid), "VM.info"], capture_output=True, text=True,
                          check=True).stdout
    assert f"-XX:SharedArchiveFile={archive}" in info
    # the JDK's own archive alone maps ~13 MB; with c360's on top, the mapped size covers its file
    mapped = int(re.search(r"CDS archive\(s\) mapped at: .*?size (\d+)", info).group(1))
    assert mapped >= archive.stat().st_size
