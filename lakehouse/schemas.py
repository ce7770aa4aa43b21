"""Every table's schema, in one place. Silver schemas are the typed contract gold reads."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _schema(*fields: tuple[str, object], nullable: bool = True) -> StructType:
    return StructType([StructField(name, typ, nullable) for name, typ in fields])


# The lineage every silver row and quarantine row carries back to its Kafka record.
LINEAGE = (
    ("_kafka_topic", StringType()),
    ("_kafka_partition", IntegerType()),
    ("_kafka_offset", LongType()),
    ("_kafka_timestamp", TimestampType()),
    ("_source_file", StringType()),
    ("_source_line", IntegerType()),
)

BRONZE = _schema(
    ("key", StringType()),
    ("value", StringType()),
    ("topic", StringType()),
    ("partition", IntegerType()),
    ("offset", LongType()),
    ("kafka_timestamp", TimestampType()),
    ("_source_file", StringType()),
    ("_source_line", IntegerType()),
    ("_ingestion_timestamp", TimestampType()),
    ("_ingestion_date", DateType()),
)

# The multiplexed bronze table (every source's records, one append per micro-batch): which source, then the record
BRONZE_RECORDS = _schema(("source", StringType()), *[(f.name, f.dataType) for f in BRONZE.fields])

QUARANTINE = _schema(
    ("source", StringType()),
    ("reason", StringType()),
    ("raw_key", StringType()),
    ("raw_value", StringType()),
    *LINEAGE,
    ("_quarantined_at", TimestampType()),
    ("_quarantine_date", DateType()),
)

# ---------------------------------------------------------------------------------------------------------------
# Silver: the typed contract of every source (docs/input-contract.md). One ``Field`` per column: its snake_case
# silver name, the raw field it comes from, its type and its checks. ``streaming.silver`` builds the parser from
# these specs; the silver schema below is derived from them, so the two never disagree.
# ---------------------------------------------------------------------------------------------------------------
DECIMAL = DecimalType(18, 2)
_TYPES = {"str": StringType(), "email": StringType(), "city": StringType(), "int": IntegerType(), "long": LongType(),
          "dec": DECIMAL, "double": DoubleType(), "ts": TimestampType(), "date": DateType(), "bool": BooleanType(),
          "enum": StringType()}


@dataclass(frozen=True)
class Field:
    """One silver column: ``name`` (snake_case) parsed from the raw field ``raw`` as ``type``.

    Types: ``str`` (trimmed, placeholders -> null), ``city`` (title case), ``email`` (lower-cased, validated:
    adds ``email_valid`` and ``email_domain``, an invalid email is kept and flagged), ``int``/``long``/``dec``/
    ``double`` (numbers), ``ts`` (any configured timestamp format), ``date``, ``bool`` (true/false, yes/no, 1/0),
    ``enum`` (one of ``values``, matched case-insensitively and written in its canonical spelling).
    ``required``: a missing value rejects the record; ``min``: a smaller number rejects it. ``closed``: an enum
    value outside ``values`` rejects the record; an open enum (the default) keeps it as written and counts it as
    unlisted. The built-in closed ones are those gold's logic branches on (statuses, event types); a source
    mapping can open or close any enum (lakehouse/mappings.py).
    """

    name: str
    raw: str
    type: str = "str"
    required: bool = False
    values: tuple[str, ...] = ()
    min: float | None = None
    closed: bool = False


@dataclass(frozen=True)
class SilverSpec:
    """How one source becomes silver rows.

    Attributes:
        table: the silver table (online and in-store transactions share ``silver_transactions``).
        fields: the parsed columns, in order.
        id: the record id column (upsert key for entities, insert-once key for events).
        event_time: the record's event time (immutable for a record: merges look only at target files whose
            event-time range overlaps the batch's); None for records without one.
        event_date: a date column derived from ``event_time``.
        constants: extra literal columns (e.g. ``channel``), the partitioning, and part of the merge key.
    """

    table: str
    fields: tuple[Field, ...]
    id: str
    event_time: str | None = None
    event_date: str | None = None
    constants: tuple[tuple[str, str], ...] = ()

    @property
    def partitions(self) -> list[str]:
        """Partition columns: only the constants (the channel). Silver is not partitioned by date: a replay of
        years of history would write a file per day per batch; merges prune files by the event-time range of
        the batch instead (Delta's min/max statistics)."""
        return [c for c, _ in self.constants]


def _f(name: str, raw: str, type_: str = "str", *, req: bool = False, values: tuple[str, ...] = (),
       min_: float | None = None, closed: bool = False) -> Field:
    return Field(name, raw, type_, req, values, min_, closed)


def _same(*names: str) -> tuple[Field, ...]:
    """Plain text columns whose raw name is already snake_case."""
    return tuple(_f(n, n) for n in names)


STATUS = ("Active", "Inactive", "Blocked")
DEVICES = ("web", "android", "ios")
PAYMENTS = ("UPI", "Credit Card", "Debit Card", "Net Banking", "Cash on Delivery", "Wallet", "Cash")
TIERS = ("Bronze", "Silver", "Gold", "Platinum")
GENDERS = ("Female", "Male", "Other")
TX_STATUS = ("Completed", "Shipped", "Processing", "Cancelled", "Returned")

_TX_COMMON = (
    _f("customer_id", "CustomerID", req=True), _f("product_id", "ProductID"),
    _f("quantity", "Quantity", "int", min_=1), _f("amount", "Amount", "dec", req=True, min_=0),
    _f("transaction_datetime", "DateTime", "ts", req=True), _f("payment_method", "PaymentMethod", "enum", values=PAYMENTS),
)

SILVER_SPECS: dict[str, SilverSpec] = {
    # seed 000
    "customers": SilverSpec("silver_customers", (
        _f("customer_id", "customer_id", req=True), _f("customer_name", "customer_name"), _f("email", "email", "email"),
        _f("phone", "phone"), _f("city", "city", "city"),
        _f("registration_datetime", "registration_datetime", "ts", req=True),
        _f("last_login_datetime", "last_login_datetime", "ts"),
        _f("status", "status", "enum", req=True, values=STATUS, closed=True),
    ), "customer_id"),
    "logins": SilverSpec("silver_logins", (
        _f("login_id", "login_id", req=True), _f("customer_id", "customer_id", req=True),
        _f("login_datetime", "login_datetime", "ts", req=True), _f("city", "city", "city"),
        _f("device", "device", "enum", values=DEVICES),
    ), "login_id", "login_datetime", "login_date"),
    # seed 004
    "accounts": SilverSpec("silver_accounts", (
        _f("customer_id", "customer_id", req=True), _f("name", "name"), _f("is_active", "is_active", "bool"),
        _f("loyalty_status", "loyalty_status", "enum", values=TIERS), _f("join_date", "join_date", "date"),
        _f("first_purchase", "first_purchase", "date"), _f("last_login", "last_login", "ts"),
        _f("account_balance", "account_balance", "dec"), _f("loyalty_points", "loyalty_points", "long", min_=0),
    ), "customer_id"),
    # seed 001
    "orders": SilverSpec("silver_orders", (
        _f("order_id", "order_id", req=True), _f("customer_id", "customer_id", req=True), *_same("product_id",
        "product_name", "category"), _f("quantity", "quantity", "int", min_=1),
        _f("unit_price", "unit_price", "dec", min_=0), _f("total_amount", "total_amount", "dec", req=True, min_=0),
        _f("order_datetime", "order_datetime", "ts", req=True),
        _f("order_status", "order_status", "enum", req=True,
           values=("Placed", "Shipped", "Delivered", "Cancelled", "Returned"), closed=True),
        _f("payment_method", "payment_method", "enum", values=PAYMENTS),
        _f("is_subscription", "is_subscription", "bool"),
        _f("subscription_status", "subscription_status", "enum", values=("Active", "Cancelled"), closed=True),
        _f("subscription_cancelled_at", "subscription_cancelled_at", "ts"),
    ), "order_id", "order_datetime", "order_date"),
    # order lines (any retail export: an invoice with several products), one row per line; gold builds the orders,
    # their totals and product sales from them (batch/lines.py). A negative quantity or amount is a return or a
    # credit note (is_return).
    "order_lines": SilverSpec("silver_order_lines", (
        _f("line_id", "line_id", req=True), _f("order_id", "order_id", req=True),
        _f("customer_id", "customer_id", req=True), *_same("product_id", "product_name", "category"),
        _f("quantity", "quantity", "int"), _f("unit_price", "unit_price", "dec", min_=0),
        _f("line_amount", "line_amount", "dec", req=True), _f("discount", "discount", "double", min_=0),
        _f("order_datetime", "order_datetime", "ts", req=True),
        _f("order_status", "order_status", "enum", values=("Placed", "Shipped", "Delivered", "Cancelled", "Returned")),
        _f("payment_method", "payment_method", "enum", values=PAYMENTS),
        _f("channel", "channel", "enum", values=("Online", "In-Store")),
    ), "line_id", "order_datetime", "order_date"),
    "refunds": SilverSpec("silver_refunds", (
        _f("refund_id", "refund_id", req=True), _f("order_id", "order_id", req=True),
        _f("customer_id", "customer_id", req=True), _f("product_id", "product_id"),
        _f("refund_amount", "refund_amount", "dec", req=True, min_=0),
        _f("refund_datetime", "refund_datetime", "ts", req=True), _f("reason", "reason"),
    ), "refund_id", "refund_datetime", "refund_date"),
    "clickstream": SilverSpec("silver_clickstream", (
        _f("click_id", "click_id", req=True), _f("session_id", "session_id"),
        _f("customer_id", "customer_id", req=True),
        _f("event_type", "event_type", "enum", req=True, values=("page_view", "add_to_cart", "purchase"),
           closed=True),
        _f("product_id", "product_id"), _f("page", "page"), _f("event_timestamp", "event_timestamp", "ts", req=True),
        _f("device", "device", "enum", values=DEVICES), _f("campaign", "campaign"),
    ), "click_id", "event_timestamp", "event_date"),
    # seed 002
    "crm_customers": SilverSpec("silver_crm_customers", (
        _f("customer_id", "CustomerID", req=True), _f("name", "Name"), _f("email", "Email", "email"),
        _f("phone", "Phone"), _f("address", "Address"), _f("city", "City", "city"), _f("state", "State"),
        _f("country", "Country"), _f("date_of_birth", "DateOfBirth", "date"),
        _f("gender", "Gender", "enum", values=GENDERS), _f("join_date", "JoinDate", "date"),
    ), "customer_id"),
    "products": SilverSpec("silver_products", (
        _f("product_id", "ProductID", req=True), _f("name", "Name"), _f("category", "Category"), _f("brand", "Brand"),
        _f("price", "Price", "dec", min_=0), _f("cost", "Cost", "dec", min_=0),
        _f("is_subscription", "IsSubscription", "bool"),
    ), "product_id"),
    "stores": SilverSpec("silver_stores", (
        _f("store_id", "StoreID", req=True), _f("location", "Location"), _f("city", "City", "city"),
        _f("state", "State"), _f("manager", "Manager"), _f("open_hours", "OpenHours"),
        _f("opened_on", "OpenedOn", "date"),
    ), "store_id"),
    "agents": SilverSpec("silver_agents", (
        _f("agent_id", "AgentID", req=True), _f("name", "Name"), _f("department", "Department"),
        _f("shift", "Shift", "enum", values=("Morning", "Evening", "Night")), _f("hire_date", "HireDate", "date"),
    ), "agent_id"),
    # seed 002: online and in-store transactions unified, with a channel column
    "online_transactions": SilverSpec("silver_transactions", (
        _f("transaction_id", "OrderID", req=True), *_TX_COMMON[:2], _f("store_id", "StoreID"), *_TX_COMMON[2:],
        _f("status", "Status", "enum", req=True, values=TX_STATUS, closed=True),
    ), "transaction_id", "transaction_datetime", "transaction_date", (("channel", "Online"),)),
    "instore_transactions": SilverSpec("silver_transactions", (
        _f("transaction_id", "TransactionID", req=True), *_TX_COMMON[:2], _f("store_id", "StoreID"),
        *_TX_COMMON[2:], _f("status", "Status", "enum", values=TX_STATUS, closed=True),
    ), "transaction_id", "transaction_datetime", "transaction_date", (("channel", "In-Store"),)),
    "loyalty_accounts": SilverSpec("silver_loyalty_accounts", (
        _f("loyalty_id", "LoyaltyID", req=True), _f("customer_id", "CustomerID", req=True),
        _f("join_date", "JoinDate", "date"), _f("points_earned", "PointsEarned", "long", min_=0),
        _f("points_redeemed", "PointsRedeemed", "long", min_=0), _f("points_balance", "PointsBalance", "long"),
        _f("tier_level", "TierLevel", "enum", values=TIERS),
    ), "loyalty_id"),
    "loyalty_transactions": SilverSpec("silver_loyalty_transactions", (
        _f("loyalty_txn_id", "LoyaltyTxnID", req=True), _f("loyalty_id", "LoyaltyID"),
        _f("customer_id", "CustomerID", req=True), _f("txn_datetime", "DateTime", "ts", req=True),
        _f("points_change", "PointsChange", "long", req=True),
        _f("reason", "Reason", "enum", values=("Purchase", "Redemption"), closed=True),
    ), "loyalty_txn_id", "txn_datetime", "txn_date"),
    "service_interactions": SilverSpec("silver_service_interactions", (
        _f("interaction_id", "InteractionID", req=True), _f("customer_id", "CustomerID", req=True),
        _f("agent_id", "AgentID"), _f("interaction_datetime", "DateTime", "ts", req=True),
        _f("channel", "Channel", "enum", values=("Phone", "Email", "Chat")), _f("issue_type", "IssueType"),
        _f("resolution_status", "ResolutionStatus", "enum", values=("Resolved", "Pending", "Escalated", "Unresolved"),
           closed=True),
        _f("resolution_time_hours", "ResolutionTimeHours", "double", min_=0),
        _f("satisfaction_score", "SatisfactionScore", "int", min_=1),
    ), "interaction_id", "interaction_datetime", "interaction_date"),
    "customer_insights": SilverSpec("silver_customer_insights", (
        _f("session_id", "SessionID", req=True), _f("session_start", "SessionStart", "ts", req=True),
        _f("customer_id", "CustomerID", req=True), _f("full_name", "FullName"),
        _f("gender", "Gender", "enum", values=GENDERS), _f("age", "Age", "int", min_=0),
        _f("credit_score", "CreditScore", "int", min_=0), _f("monthly_income", "MonthlyIncome", "dec", min_=0),
        _f("country", "Country"), _f("state", "State"), _f("city", "City", "city"), _f("category", "Category"),
        _f("product", "Product"), _f("cost", "Cost", "dec", min_=0), _f("price", "Price", "dec", min_=0),
        _f("quantity", "Quantity", "int", min_=1), _f("campaign", "CampaignSchema"),
        _f("payment_method", "PaymentMethod", "enum", values=PAYMENTS), _f("order_return", "OrderReturn", "bool"),
        _f("return_reason", "ReturnReason"),
        # the session's own funnel, when the export carries it (CUSTOMER_INSIGHTS_FUNNEL): gold then counts sessions
        # and conversions from it (docs/gold.md, gold_campaign_performance)
        _f("cart_added_at", "CartAdditionTime", "ts"), _f("order_confirmed", "OrderConfirmation", "bool"),
        _f("order_confirmed_at", "OrderConfirmationTime", "ts"), _f("session_end", "SessionEnd", "ts"),
    ), "session_id", "session_start", "session_date"),
    "shopping_behaviour": SilverSpec("silver_shopping_behaviour", (
        _f("customer_id", "customer_id", req=True), _f("age", "age", "int", min_=0), *_same("age_group"),
        _f("gender", "gender", "enum", values=GENDERS), *_same("item_purchased", "category"),
        _f("purchase_amount", "purchase_amount", "dec", min_=0), _f("location", "location", "city"),
        _f("review_rating", "review_rating", "double", min_=0),
        _f("subscription_status", "subscription_status", "bool"), _f("shipping_type", "shipping_type"),
        _f("discount_applied", "discount_applied", "bool"),
        _f("frequency_of_purchases_days", "frequency_of_purchases_days", "int", min_=0),
    ), "customer_id"),
}

# Fields of a source that its generated file does not carry but real exports do: customer_insights' session funnel
# (seed 002's file holds converted sessions only; the Customer360Insights export holds every session, with its cart,
# confirmation and end times)
OPTIONAL_RAW_FIELDS = {"customer_insights": ("CartAdditionTime", "OrderConfirmation", "OrderConfirmationTime",
                                             "SessionEnd")}

# Columns derived from the parsed ones (seed 002's enrichments), in the silver schema after the parsed fields.
DERIVED: dict[str, tuple[tuple[str, object], ...]] = {
    "silver_order_lines": (("is_return", BooleanType()),),
    "silver_transactions": (("transaction_year", IntegerType()), ("transaction_month", IntegerType()),
                            ("transaction_hour", IntegerType())),
    "silver_loyalty_accounts": (("tier_rank", IntegerType()),),
    "silver_service_interactions": (("is_resolved", BooleanType()), ("is_escalated", BooleanType())),
    "silver_customer_insights": (("age_group", StringType()), ("income_bracket", StringType()),
                                 ("profit_margin", DecimalType(9, 4))),
}


def _silver_schema(spec: SilverSpec) -> StructType:
    fields: list[tuple[str, object]] = []
    for f in spec.fields:
        fields.append((f.name, _TYPES[f.type]))
        if f.type == "email":
            fields += [("email_valid", BooleanType()), ("email_domain", StringType())]
    fields += [(c, StringType()) for c, _ in spec.constants]
    if spec.event_date:
        fields.append((spec.event_date, DateType()))
    fields += list(DERIVED.get(spec.table, ()))
    # _rescued_data: the fields a record carried that the contract does not name, as JSON (schema evolution,
    # docs/input-contract.md); last, so that tables created before it gain it by ALTER TABLE ADD COLUMNS
    return _schema(*fields, ("event_id", StringType()), *LINEAGE, ("_updated_at", TimestampType()),
                   ("_rescued_data", StringType()))


SILVER: dict[str, StructType] = {name: _silver_schema(spec) for name, spec in SILVER_SPECS.items()}
# each event table's event-time column: its files are compacted in this order (lakehouse.lake_writes), so that a
# merge, which looks only at the files whose event-time range overlaps its batch's, keeps reading few of them
EVENT_TIME_OF_TABLE: dict[str, str] = {s.table: s.event_time for s in SILVER_SPECS.values() if s.event_time}
# the column whose order a table's small files are joined in (lakehouse.lake_writes.OpenTables.compact_in_order,
# which never rewrites a file once it is big): an event table's event time, and bronze's Kafka timestamp. Bronze
# (appended to only, 17 sources a day) compacted by size rewrote every file under 100 MB each round: in the soak at
# 5,000 events/s its compactions took 20, 36, 57, 91, then 168 s (2026-12-08)
COMPACTION_ORDER: dict[str, str] = {**EVENT_TIME_OF_TABLE, "bronze_records": "kafka_timestamp"}

# The fields each source's JSON value carries (all strings on the wire: the files are text).
RAW_FIELDS: dict[str, tuple[str, ...]] = {
    name: ("event_id", *(f.raw for f in spec.fields)) for name, spec in SILVER_SPECS.items()
}

OPS_STREAM_BATCHES = _schema(
    ("query", StringType()),
    ("source", StringType()),
    ("batch_id", LongType()),
    ("read_rows", LongType()),
    ("quarantined_rows", LongType()),
    ("duplicate_rows", LongType()),
    ("inserted_rows", LongType()),
    ("updated_rows", LongType()),
    ("processed_at", TimestampType()),
    ("rescued_rows", LongType()),  # of the records written, those with fields kept in _rescued_data (added later)
    ("unlisted_rows", LongType()),  # of the records written, those with a value outside an open enum's list (later)
)

# What ``c360 stream`` records of each query's progress reports (StreamingQueryProgress).
OPS_STREAM_PROGRESS_RAW = _schema(
    ("query", StringType()),
    ("batch_id", LongType()),
    ("timestamp", StringType()),
    ("input_rows", LongType()),
    ("input_rows_per_s", DoubleType()),
    ("processed_rows_per_s", DoubleType()),
    ("batch_duration_ms", LongType()),
    ("state_rows", LongType()),
    ("watermark", StringType()),
    ("durations_ms_json", StringType()),
)
OPS_STREAM_PROGRESS = _schema(*[(f.name, TimestampType() if f.name in ("timestamp", "watermark") else f.dataType)
                                for f in OPS_STREAM_PROGRESS_RAW.fields])

# The stream tables (streaming/anomalies.py, streaming/city_hour.py).
STREAM_LOGIN_ANOMALIES = _schema(
    ("customer_id", StringType()),
    ("login_id", StringType()),
    ("login_datetime", TimestampType()),
    ("gap_s", DoubleType()),
    ("rule", StringType()),
    ("severity", StringType()),
    ("evidence", StringType()),
)
# The alerts log (streaming/alerts.py): every alert, update and retraction sent to the alerts topic, and every
# confirmation, one row each (``stage``: on the login's arrival or at the watermark; ``origin``: query:batch).
STREAM_ALERTS = _schema(
    ("alert_id", StringType()),
    ("kind", StringType()),
    ("stage", StringType()),
    *[(f.name, f.dataType) for f in STREAM_LOGIN_ANOMALIES.fields],
    ("origin", StringType()),
    ("logged_at", TimestampType()),
)
STREAM_CITY_HOUR_LOGINS = _schema(
    ("city", StringType()),
    ("window_start", TimestampType()),
    ("window_end", TimestampType()),
    ("login_date", DateType()),
    ("hour", IntegerType()),
    ("login_count", LongType()),
)
