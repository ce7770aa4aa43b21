"""The table registry: where each table of the lake lives, and the sources c360 knows.

Tables are Delta tables at ``<lake root>/<name>``, their names carrying their layer
(``bronze_customers``, ``silver_logins``, ``gold_customer_activity``...). The lake root may be a local path
or a URI (``s3a://bucket/c360``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """A source file of the input contract and the topic and tables it flows into.

    Attributes:
        name: the entity; the topic is ``<prefix><name>``, the tables ``bronze_<name>``, ``silver_<name>``.
        file: the file's path inside the data directory.
        key_column: the customer id column; it is the Kafka key, so one customer's records stay ordered.
        id_column: the column that identifies a record in silver (entities are upserted on it).
        kind: ``entity`` (upserted: the latest version wins) or ``event`` (inserted once per event id).
    """

    name: str
    file: str
    key_column: str
    id_column: str
    kind: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("customers", "customers.csv", "customer_id", "customer_id", "entity"),
        Source("logins", "logins.csv", "customer_id", "login_id", "event"),
    )
}

QUARANTINE = "silver_quarantine"
OPS_BATCHES = "ops_stream_batches"


def table_path(lake_root: str, name: str) -> str:
    """The location of a table: a path under a local root, or a URI under a URI root."""
    if "://" in lake_root:
        return f"{lake_root.rstrip('/')}/{name}"
    return str(Path(lake_root).resolve() / name)


def checkpoint_path(checkpoint_root: str, query: str) -> str:
    if "://" in checkpoint_root:
        return f"{checkpoint_root.rstrip('/')}/{query}"
    return str(Path(checkpoint_root).resolve() / query)
