"""What `c360 stream` says when a query stops: one line naming the cause and the way out."""

from __future__ import annotations

from types import SimpleNamespace

from streaming.app import _failure


class _QueryError(Exception):
    """Shaped like PySpark's StreamingQueryException: the JVM's message in ``desc``."""

    def __init__(self, desc: str):
        super().__init__(desc)
        self.desc = desc


def _stopped(name: str, text: str | None):
    exc = None if text is None else _QueryError(text)
    return SimpleNamespace(name=name, exception=lambda: exc)


def test_a_state_layout_an_older_version_wrote_points_to_the_rebuild():
    # Spark 4's message for a checkpoint of the per-customer layout read by the 256-key one (seen on a real run)
    text = ("[STATE_STORE_KEY_SCHEMA_NOT_COMPATIBLE] Provided key schema does not match existing state key schema.\n"
            "Please check number and type of fields.")
    got = _failure(_stopped("login_anomalies", text))
    assert got.startswith("query login_anomalies stopped: its checkpoint holds state in a layout this c360")
    assert "STATE_STORE_KEY_SCHEMA_NOT_COMPATIBLE" in got and "Rebuilding the login-anomaly query" in got
    assert "\n" not in got


def test_other_failures_keep_their_own_lines():
    assert _failure(_stopped("ingest", None)) is None
    assert "Kafka no longer holds records" in _failure(_stopped("ingest", "[KAFKA_DATA_LOSS] gone\nmore"))
    assert _failure(_stopped("city_hour_logins", "[DIVIDE_BY_ZERO] oops\ntrace")) == \
        "query city_hour_logins failed: [DIVIDE_BY_ZERO] oops"
