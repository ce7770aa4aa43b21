"""Silver tables at benchmark scale, synthesized directly in Spark (``python -m bench.gold_data``).

The gold benchmark needs 1,000,000 customers with >= 10M orders, >= 10M logins and >= 20M clickstream events.
Streaming that through Kafka would take hours at today's ingest rate (issue 4's figures), and the generator's
default mix has ~1.3 orders per customer; so the benchmark writes silver directly: every column of every silver
table in its exact silver schema (``lakehouse.schemas.SILVER``), values drawn from hashes of row ids (the same
arguments give the same tables), with the relationships gold depends on: customers' ids across tables,
online transactions = the orders, refunds of returned orders, sessions of page views -> add to cart -> purchase,
skewed activity (a few customers buy and log in far more than most).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.schemas import SILVER, SILVER_SPECS

START = "2023-01-01 00:00:00"
DAYS = 730
CITIES = ["Mumbai", "Delhi", "Bengaluru", "Hyderabad", "Chennai", "Kolkata", "Pune", "Ahmedabad", "Jaipur", "Kochi"]
CATEGORIES = ["Electronics", "Fashion", "Home & Kitchen", "Beauty", "Grocery", "Sports", "Books", "Toys"]
CAMPAIGNS = ["Instagram-ads", "Google-ads", "Facebook-ads", "Twitter-ads", "Billboard-QR code", "Direct"]
PRODUCTS, STORES, AGENTS = 60, 12, 10


class Synth:
    def __init__(self, spark: SparkSession, customers: int, seed: int = 7):
        self.spark, self.n, self.seed = spark, customers, seed
        self._salt = 0

    def rand(self) -> Column:
        """A uniform in [0, 1) from a hash of the row id: stateless, so one value may be used in several branches
        of a CASE (Spark's ``rand`` advances per evaluation and would drift out of step there)."""
        return (F.abs(F.xxhash64(F.col("id"), F.lit(self.seed * 1000 + self._next()))) % 1_000_003) / 1_000_003.0

    def pick(self, values: list[str], u: Column | None = None) -> Column:
        u = self.rand() if u is None else u
        return F.element_at(F.array(*[F.lit(v) for v in values]), (F.floor(u * len(values)) + 1).cast("int"))

    def weighted(self, pairs: list[tuple[str, float]]) -> Column:
        u, acc, expr = self.rand(), 0.0, None
        for value, share in pairs[:-1]:
            acc += share
            expr = F.when(u < acc, F.lit(value)) if expr is None else expr.when(u < acc, F.lit(value))
        return expr.otherwise(F.lit(pairs[-1][0]))

    def customer(self, skew: float = 1.6) -> Column:
        """A customer id, skewed: rand^skew puts more rows on low ids."""
        idx = F.floor(F.pow(self.rand(), skew) * self.n) + 1
        return F.concat(F.lit("C"), F.lpad(idx.cast("string"), 7, "0"))

    def ts(self, days: float = DAYS, start: Column | None = None) -> Column:
        base = F.unix_timestamp(F.lit(START)) if start is None else F.unix_timestamp(start)
        return F.timestamp_seconds(base + F.floor(self.rand() * days * 86400))

    def amount(self, median: float = 1500, spread: float = 0.9) -> Column:
        noise = (self.rand() + self.rand() + self.rand() + self.rand() - 2) * math.sqrt(3) * spread  # ~N(0, 1)
        return F.round(F.exp(F.lit(math.log(median)) + noise), 2).cast("decimal(18,2)")

    def _next(self) -> int:
        self._salt += 1
        return self._salt

    def ids(self, prefix: str, width: int = 10) -> Column:
        return F.concat(F.lit(prefix), F.lpad(F.col("id").cast("string"), width, "0"))

    def rows(self, n: int) -> DataFrame:
        return self.spark.range(1, n + 1, numPartitions=max(2, n // 2_000_000))


def _fill(df: DataFrame, table: str, cols: dict[str, Column]) -> DataFrame:
    """``cols`` in the exact silver schema of ``table``; unset columns get a typed filler or null."""
    schema = next(SILVER[s] for s, spec in SILVER_SPECS.items() if spec.table == table)
    out = []
    for f in schema.fields:
        if f.name in cols:
            expr = cols[f.name]
        elif f.name == "event_id":
            expr = F.sha2(F.concat(F.lit(table), F.col("id").cast("string")), 256)
        elif f.name.startswith("_") or f.name in ("topic", "partition", "offset"):
            expr = F.lit(None)
        elif isinstance(f.dataType, T.StringType):
            expr = F.concat(F.lit(f.name + "-"), (F.col("id") % 97).cast("string"))
        else:
            expr = F.lit(None)
        out.append(expr.cast(f.dataType).alias(f.name))
    return df.select(*out)


def build(spark: SparkSession, customers: int, seed: int = 7) -> dict[str, DataFrame]:
    s = Synth(spark, customers, seed)
    n = customers
    cust_id = F.concat(F.lit("C"), F.lpad(F.col("id").cast("string"), 7, "0"))
    reg = s.ts(600)
    t: dict[str, DataFrame] = {}
    base = s.rows(n).withColumn("reg", reg)
    t["silver_customers"] = _fill(base, "silver_customers", {
        "customer_id": cust_id, "customer_name": F.concat(F.lit("Customer "), F.col("id")),
        "email": F.concat(F.lit("c"), F.col("id"), F.lit("@example.com")), "email_valid": F.lit(True),
        "email_domain": F.lit("example.com"), "phone": F.concat(F.lit("+91 9"), F.lpad(F.col("id"), 9, "0")),
        "city": s.pick(CITIES), "registration_datetime": F.col("reg"),
        "last_login_datetime": F.when(s.rand() > 0.12, s.ts(120, F.col("reg"))),
        "status": s.weighted([("Active", 0.8), ("Inactive", 0.15), ("Blocked", 0.05)])})
    t["silver_crm_customers"] = _fill(base, "silver_crm_customers", {
        "customer_id": cust_id, "name": F.concat(F.lit("Customer "), F.col("id")),
        "email": F.concat(F.lit("c"), F.col("id"), F.lit("@example.com")), "email_valid": F.lit(True),
        "email_domain": F.lit("example.com"), "city": s.pick(CITIES), "country": F.lit("India"),
        "gender": s.pick(["Female", "Male", "Other"]), "join_date": F.to_date("reg"),
        "date_of_birth": F.date_sub(F.lit("2005-01-01").cast("date"), F.floor(s.rand() * 18000).cast("int"))})
    t["silver_accounts"] = _fill(base, "silver_accounts", {
        "customer_id": cust_id, "is_active": s.rand() < 0.8,
        "loyalty_status": s.weighted([("Bronze", 0.5), ("Silver", 0.3), ("Gold", 0.15), ("Platinum", 0.05)]),
        "join_date": F.to_date("reg"), "account_balance": s.amount(3000, 1.0),
        "loyalty_points": F.floor(s.rand() * 5000)})
    logins = s.rows(10 * n + 1000)
    t["silver_logins"] = _fill(logins.withColumn("at", s.ts()), "silver_logins", {
        "login_id": s.ids("L"), "customer_id": s.customer(1.3), "login_datetime": F.col("at"),
        "city": s.pick(CITIES), "device": s.weighted([("web", 0.45), ("android", 0.35), ("ios", 0.2)]),
        "login_date": F.to_date("at")})
    orders = (s.rows(10 * n + 1000)
              .withColumn("cust", s.customer(1.6)).withColumn("at", s.ts())
              .withColumn("product", (F.floor(s.rand() * PRODUCTS) + 1).cast("int"))
              .withColumn("qty", F.when(s.rand() < 0.8, 1).otherwise(F.floor(s.rand() * 3) + 2).cast("int"))
              .withColumn("unit", s.amount(1200, 0.9))
              .withColumn("status", s.weighted([("Delivered", 0.80), ("Shipped", 0.05), ("Placed", 0.03),
                                                ("Cancelled", 0.08), ("Returned", 0.04)]))
              .withColumn("sub", s.rand() < 0.05).withColumn("sub_cancelled", s.rand() < 0.35)
              .withColumn("pay", s.pick(["UPI", "Credit Card", "Debit Card", "Net Banking", "Wallet"])))
    product_id = F.concat(F.lit("P"), F.lpad(F.col("product").cast("string"), 5, "0"))
    total = (F.col("unit") * F.col("qty")).cast("decimal(18,2)")
    t["silver_orders"] = _fill(orders, "silver_orders", {
        "order_id": s.ids("O"), "customer_id": F.col("cust"), "product_id": product_id,
        "product_name": F.concat(F.lit("Product "), F.col("product")),
        "category": F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]), (F.col("product") % 8 + 1).cast("int")),
        "quantity": F.col("qty"), "unit_price": F.col("unit"), "total_amount": total, "order_datetime": F.col("at"),
        "order_status": F.col("status"), "payment_method": F.col("pay"), "is_subscription": F.col("sub"),
        "subscription_status": F.when(F.col("sub"), F.when(F.col("sub_cancelled"), "Cancelled").otherwise("Active")),
        "order_date": F.to_date("at")})
    seed2 = {"Delivered": "Completed", "Placed": "Processing"}
    status2 = F.coalesce(F.create_map(*[F.lit(x) for kv in seed2.items() for x in kv])[F.col("status")],
                         F.col("status"))
    online = _fill(orders, "silver_transactions", {
        "transaction_id": s.ids("O"), "customer_id": F.col("cust"), "product_id": product_id, "quantity": F.col("qty"),
        "amount": total, "transaction_datetime": F.col("at"), "payment_method": F.col("pay"), "status": status2,
        "channel": F.lit("Online"), "store_id": F.lit(None)})
    instore = s.rows(int(1.6 * n)).withColumn("at", s.ts())
    instore = _fill(instore, "silver_transactions", {
        "transaction_id": s.ids("T"), "customer_id": s.customer(1.6),
        "product_id": F.concat(F.lit("P"), F.lpad((F.floor(s.rand() * PRODUCTS) + 1).cast("string"), 5, "0")),
        "store_id": F.concat(F.lit("S"), F.lpad((F.floor(s.rand() * STORES) + 1).cast("string"), 3, "0")),
        "quantity": F.lit(1), "amount": s.amount(900, 0.8), "transaction_datetime": F.col("at"),
        "payment_method": s.pick(["Cash", "Credit Card", "Debit Card", "UPI"]), "status": F.lit("Completed"),
        "channel": F.lit("In-Store")})
    t["silver_transactions"] = _with_date_parts(online.unionByName(instore))
    returned = orders.where((F.col("status") == "Returned") | ((F.col("status") == "Delivered") & (s.rand() < 0.01)))
    t["silver_refunds"] = _fill(returned.withColumn("at", F.col("at") + F.expr("INTERVAL 5 DAYS")), "silver_refunds", {
        "refund_id": s.ids("R"), "order_id": s.ids("O"), "customer_id": F.col("cust"), "product_id": product_id,
        "refund_amount": total, "refund_datetime": F.col("at"), "reason": s.pick(["Damaged", "Wrong item"]),
        "refund_date": F.to_date("at")})
    sessions = 4 * n + 1000
    clicks = (s.rows(5 * sessions).withColumn("session", F.floor((F.col("id") - 1) / 5)).withColumn("pos", (F.col("id") - 1) % 5)
              .withColumn("h", F.abs(F.xxhash64("session", F.lit(seed)))))
    sess_cust = F.concat(F.lit("C"), F.lpad((F.col("h") % n + 1).cast("string"), 7, "0"))
    converted = (F.col("h") % 1000) < 300
    event = (F.when(F.col("pos") < 3, "page_view").when(F.col("pos") == 3, "add_to_cart")
             .when(converted, "purchase").otherwise("page_view"))
    at = F.timestamp_seconds(F.unix_timestamp(F.lit(START)) + F.col("h") % (DAYS * 86400) + F.col("pos") * 60)
    t["silver_clickstream"] = _fill(clicks.withColumn("at", at), "silver_clickstream", {
        "click_id": s.ids("K", 11), "session_id": F.concat(F.lit("S"), F.col("session")), "customer_id": sess_cust,
        "event_type": event, "product_id": F.concat(F.lit("P"), F.lpad((F.col("h") % PRODUCTS + 1).cast("string"), 5, "0")),
        "event_timestamp": F.col("at"), "device": s.pick(["web", "android", "ios"]),
        "campaign": F.element_at(F.array(*[F.lit(c) for c in CAMPAIGNS]), (F.col("h") % 6 + 1).cast("int")),
        "event_date": F.to_date("at")})
    insights = s.rows(n).withColumn("at", s.ts())
    t["silver_customer_insights"] = _fill(insights, "silver_customer_insights", {
        "session_id": s.ids("S"), "session_start": F.col("at"), "customer_id": s.customer(1.6),
        "age": (F.floor(s.rand() * 50) + 18).cast("int"), "city": s.pick(CITIES), "category": s.pick(CATEGORIES),
        "cost": s.amount(700, 0.7), "price": s.amount(1200, 0.7), "quantity": F.lit(1), "campaign": s.pick(CAMPAIGNS),
        "order_return": s.rand() < 0.08, "session_date": F.to_date("at")})
    loyal = s.rows(int(0.7 * n))
    tier = s.weighted([("Bronze", 0.5), ("Silver", 0.3), ("Gold", 0.15), ("Platinum", 0.05)])
    t["silver_loyalty_accounts"] = _fill(loyal.withColumn("tier", tier), "silver_loyalty_accounts", {
        "loyalty_id": s.ids("LY", 8), "customer_id": cust_id, "tier_level": F.col("tier"),
        "tier_rank": F.create_map(*[F.lit(x) for kv in {"Bronze": 1, "Silver": 2, "Gold": 3, "Platinum": 4}.items()
                                    for x in kv])[F.col("tier")],
        "points_earned": F.floor(s.rand() * 9000), "points_redeemed": F.floor(s.rand() * 1000),
        "points_balance": F.floor(s.rand() * 8000)})
    ltx = s.rows(2 * n).withColumn("at", s.ts())
    t["silver_loyalty_transactions"] = _fill(ltx, "silver_loyalty_transactions", {
        "loyalty_txn_id": s.ids("LT"), "customer_id": s.customer(1.3), "txn_datetime": F.col("at"),
        "points_change": F.floor(s.rand() * 400) - 100, "reason": s.pick(["Purchase", "Redemption"]),
        "txn_date": F.to_date("at")})
    service = s.rows(n // 2).withColumn("at", s.ts()).withColumn(
        "res", s.weighted([("Resolved", 0.7), ("Pending", 0.1), ("Escalated", 0.1), ("Unresolved", 0.1)]))
    t["silver_service_interactions"] = _fill(service, "silver_service_interactions", {
        "interaction_id": s.ids("I"), "customer_id": s.customer(1.3), "interaction_datetime": F.col("at"),
        "channel": s.pick(["Phone", "Email", "Chat"]), "resolution_status": F.col("res"),
        "satisfaction_score": (F.floor(s.rand() * 5) + 1).cast("int"), "interaction_date": F.to_date("at"),
        "is_resolved": F.col("res") == "Resolved", "is_escalated": F.col("res") == "Escalated"})
    t["silver_products"] = _fill(s.rows(PRODUCTS), "silver_products", {
        "product_id": F.concat(F.lit("P"), F.lpad(F.col("id").cast("string"), 5, "0")),
        "name": F.concat(F.lit("Product "), F.col("id")),
        "category": F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]), (F.col("id") % 8 + 1).cast("int")),
        "price": s.amount(1200, 0.9), "cost": s.amount(700, 0.9), "is_subscription": F.col("id") % 12 == 0})
    t["silver_stores"] = _fill(s.rows(STORES), "silver_stores", {
        "store_id": F.concat(F.lit("S"), F.lpad(F.col("id").cast("string"), 3, "0")), "city": s.pick(CITIES)})
    t["silver_agents"] = _fill(s.rows(AGENTS), "silver_agents", {
        "agent_id": F.concat(F.lit("A"), F.col("id")), "shift": s.pick(["Morning", "Evening", "Night"])})
    t["silver_shopping_behaviour"] = _fill(s.rows(n // 2), "silver_shopping_behaviour", {
        "customer_id": cust_id, "age": (F.floor(s.rand() * 50) + 18).cast("int"), "purchase_amount": s.amount(60, 0.5),
        "gender": s.pick(["Female", "Male", "Other"])})
    return t


def _with_date_parts(df: DataFrame) -> DataFrame:
    at = F.col("transaction_datetime")
    return (df.withColumn("transaction_date", F.to_date(at)).withColumn("transaction_year", F.year(at))
            .withColumn("transaction_month", F.month(at)).withColumn("transaction_hour", F.hour(at)))


def write(spark: SparkSession, lake: str, customers: int, seed: int = 7) -> dict[str, int]:
    """Write every silver table under ``lake``; returns rows per table."""
    counts = {}
    for name, df in build(spark, customers, seed).items():
        started = time.monotonic()
        writer = df.write.format("delta").mode("overwrite")
        if name == "silver_transactions":
            writer = writer.partitionBy("channel")
        writer.save(f"{lake}/{name}")
        counts[name] = spark.read.format("delta").load(f"{lake}/{name}").count()
        print(f"{name}: {counts[name]:,} rows in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    from lakehouse import config
    from lakehouse.spark import auto_driver_memory, get_spark

    cfg = config.load(overrides={"spark": {"driver_memory": auto_driver_memory(), "shuffle_partitions": 8}})
    spark = get_spark(cfg, "c360-bench-silver")
    print(json.dumps(write(spark, args.lake, args.customers, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
