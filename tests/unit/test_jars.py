import pytest

from lakehouse.errors import C360Error
from lakehouse.jars import artifact_id, require_tool


@pytest.mark.parametrize(("name", "artifact"), [
    ("jackson-core-2.13.5.jar", "jackson-core"),
    ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
    ("delta-spark_4.1_2.13-4.4.0.jar", "delta-spark_4.1_2.13"),
    ("spark-sql-kafka-0-10_2.13-4.1.1.jar", "spark-sql-kafka-0-10_2.13"),
    ("javassist-3.30.2-GA.jar", "javassist"),
    ("RoaringBitmap-0.9.25.jar", "RoaringBitmap"),
])
def test_artifact_id_strips_the_version(name, artifact):
    assert artifact_id(name) == artifact


def test_missing_tool_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(C360Error, match="'mvn' not found on PATH.*install Apache Maven"):
        require_tool("mvn", "to fetch jars")


def test_kafka_cluster_ids_never_start_with_a_dash(monkeypatch):
    import base64
    import uuid

    from lakehouse import kafka_local

    dash, plain = uuid.UUID(bytes=b"\xf8" + b"\x01" * 15), uuid.UUID(bytes=b"\x10" * 16)
    assert base64.urlsafe_b64encode(dash.bytes).decode().startswith("-")  # what the storage tool misreads
    draws = iter([dash, plain])
    monkeypatch.setattr(kafka_local.uuid, "uuid4", lambda: next(draws))
    assert kafka_local.new_cluster_id() == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
    monkeypatch.undo()
    ids = {kafka_local.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(len(i) == 22 and not i.startswith("-") for i in ids)
