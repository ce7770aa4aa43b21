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
        key_column: the customer id column (the Kafka key, so one customer's records stay ordered); reference
            data without a customer (products, stores, agents) is keyed by its own id.
        id_column: the column that identifies a record (entities are upserted on it, events inserted once).
        kind: ``entity`` (the latest version wins), ``event`` (immutable) or ``reference`` (a catalogue).
        columns: the file's columns, in order (docs/input-contract.md documents each).
        time_column: the event time, used by event-time replay (``--speedup``); None: sent before the events.
        seed: the seed document the file comes from.
        format: ``csv`` (with a header row) or ``jsonl`` (one JSON object per line).
        line_of: a source of lines: the column of what they are lines of (``order_id``). A file without a line id
            gets its lines numbered within their order, in file order (``<order>#1``, ``<order>#2``...).
        generated: ``c360 generate`` writes this source's file (order lines come only from users' exports).
    """

    name: str
    file: str
    key_column: str
    id_column: str
    kind: str
    columns: tuple[str, ...]
    time_column: str | None
    seed: str
    format: str = "csv"
    line_of: str | None = None
    generated: bool = True


def _src(name, file, key, id_, kind, columns, time, seed, fmt="csv", line_of=None, generated=True) -> Source:
    return Source(name, file, key, id_, kind, tuple(columns.split()), time, seed, fmt, line_of, generated)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        # seed 000: customer activity
        _src("customers", "customers.csv", "customer_id", "customer_id", "entity",
             "customer_id customer_name email phone city registration_datetime last_login_datetime status",
             None, "000"),
        _src("logins", "logins.csv", "customer_id", "login_id", "event",
             "login_id customer_id login_datetime city device", "login_datetime", "000"),
        # seed 004: account fields
        _src("accounts", "accounts.csv", "customer_id", "customer_id", "entity",
             "customer_id name is_active loyalty_status join_date first_purchase last_login account_balance "
             "loyalty_points", None, "004"),
        # seed 001: e-commerce orders, refunds, clickstream
        _src("orders", "orders_large.csv", "customer_id", "order_id", "entity",
             "order_id customer_id product_id product_name category quantity unit_price total_amount "
             "order_datetime order_status payment_method is_subscription subscription_status "
             "subscription_cancelled_at", "order_datetime", "001"),
        # any retail export's order lines (no seed file: c360 generate writes one row per order)
        _src("order_lines", "order_lines.csv", "customer_id", "line_id", "entity",
             "line_id order_id customer_id product_id product_name category quantity unit_price line_amount discount "
             "order_datetime order_status payment_method channel", "order_datetime", "001", line_of="order_id",
             generated=False),
        _src("refunds", "refunds_large.csv", "customer_id", "refund_id", "event",
             "refund_id order_id customer_id product_id refund_amount refund_datetime reason",
             "refund_datetime", "001"),
        _src("clickstream", "clickstream.json", "customer_id", "click_id", "event",
             "click_id session_id customer_id event_type product_id page event_timestamp device campaign",
             "event_timestamp", "001", "jsonl"),
        # seed 002: the Customer 360 sources, in their own 360/ folder
        _src("crm_customers", "360/Customers.csv", "CustomerID", "CustomerID", "entity",
             "CustomerID Name Email Phone Address City State Country DateOfBirth Gender JoinDate", None, "002"),
        _src("products", "360/Products.csv", "ProductID", "ProductID", "reference",
             "ProductID Name Category Brand Price Cost IsSubscription", None, "002"),
        _src("stores", "360/Stores.csv", "StoreID", "StoreID", "reference",
             "StoreID Location City State Manager OpenHours OpenedOn", None, "002"),
        _src("agents", "360/Agents.csv", "AgentID", "AgentID", "reference",
             "AgentID Name Department Shift HireDate", None, "002"),
        _src("online_transactions", "360/OnlineTransactions.csv", "CustomerID", "OrderID", "entity",
             "OrderID CustomerID ProductID Quantity Amount DateTime PaymentMethod Status", "DateTime", "002"),
        _src("instore_transactions", "360/InStoreTransactions.csv", "CustomerID", "TransactionID", "event",
             "TransactionID CustomerID StoreID ProductID Quantity Amount DateTime PaymentMethod", "DateTime", "002"),
        _src("loyalty_accounts", "360/LoyaltyAccounts.csv", "CustomerID", "LoyaltyID", "entity",
             "LoyaltyID CustomerID JoinDate PointsEarned PointsRedeemed PointsBalance TierLevel", None, "002"),
        _src("loyalty_transactions", "360/LoyaltyTransactions.csv", "CustomerID", "LoyaltyTxnID", "event",
             "LoyaltyTxnID LoyaltyID CustomerID DateTime PointsChange Reason", "DateTime", "002"),
        _src("service_interactions", "360/CustomerServiceInteractions.csv", "CustomerID", "InteractionID", "entity",
             "InteractionID CustomerID AgentID DateTime Channel IssueType ResolutionStatus ResolutionTimeHours "
             "SatisfactionScore", "DateTime", "002"),
        _src("customer_insights", "Customer360Insights.csv", "CustomerID", "SessionID", "event",
             "SessionID SessionStart CustomerID FullName Gender Age CreditScore MonthlyIncome Country State City "
             "Category Product Cost Price Quantity CampaignSchema PaymentMethod OrderReturn ReturnReason",
             "SessionStart", "002"),
        _src("shopping_behaviour", "shopping_behaviour/customer_transactions_final.csv", "customer_id",
             "customer_id", "entity",
             "customer_id age age_group gender item_purchased category purchase_amount location review_rating "
             "subscription_status shipping_type discount_applied frequency_of_purchases_days", None, "002"),
    )
}

GENERATED = [name for name, s in SOURCES.items() if s.generated]  # the sources `c360 generate` writes

QUARANTINE = "silver_quarantine"
# every source's raw records, partitioned by source and ingestion date (c360 before 2026-12 kept one bronze_<source>
# table per source: those stay readable, see legacy_bronze)
BRONZE_RECORDS = "bronze_records"
OPS_BATCHES = "ops_stream_batches"
OPS_PROGRESS = "ops_stream_progress"


def table_path(lake_root: str, name: str) -> str:
    """The location of a table: a path under a local root, or a URI under a URI root."""
    if "://" in lake_root:
        return f"{lake_root.rstrip('/')}/{name}"
    return str(Path(lake_root).resolve() / name)


def checkpoint_path(checkpoint_root: str, query: str) -> str:
    if "://" in checkpoint_root:
        return f"{checkpoint_root.rstrip('/')}/{query}"
    return str(Path(checkpoint_root).resolve() / query)


def legacy_bronze(name: str) -> str:
    """The per-source bronze table of a lake written before the multiplexed ``bronze_records`` (read, never
    written)."""
    return f"bronze_{name}"
