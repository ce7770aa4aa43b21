"""Orders from their lines: what gold reads where a user's export holds order lines (``silver_order_lines``).

A retail export has one row per order line; c360 keeps each line (silver never collapses different facts) and
builds the order here, in gold, where every line of an order is in one snapshot:

- ``order_rows``: seed 001's ``silver_orders`` shape, one row per order and product (product performance, spend
  tiers and subscription churn count sales per product): ``total_amount`` is the amount of the product's lines.
- ``transaction_rows``: seed 002's ``silver_transactions`` shape, one row per order: its sold lines' amounts
  summed, its first line's time, channel and payment; spend, RFM, CLV, cohorts and daily metrics count purchases
  from them.
- ``refund_rows``: a returned line (negative quantity or amount: a return, a credit note such as an invoice
  ``C...``) is a refund of its product and customer, netted out of spend like seed 001's refunds.
- An order id that both ``silver_transactions`` (or ``silver_orders``) and the lines hold is counted once, from its
  lines: the lines are the finer record of the same order.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.schemas import SILVER

ONLINE, COMPLETED, PLACED, CANCELLED = "Online", "Completed", "Placed", "Cancelled"


def _conform(df: DataFrame, table: str) -> DataFrame:
    """``df`` with exactly the columns of silver ``table`` (its source's schema), missing ones null."""
    schema = next(SILVER[s] for s, spec in _specs().items() if spec.table == table)
    have = set(df.columns)
    return df.select(*[(F.col(f.name) if f.name in have else F.lit(None)).cast(f.dataType).alias(f.name)
                       for f in schema.fields])


def _specs():
    from lakehouse.schemas import SILVER_SPECS

    return SILVER_SPECS


def _sales(lines: DataFrame) -> DataFrame:
    return lines.where(~F.coalesce(F.col("is_return"), F.lit(False)))


def order_rows(orders: DataFrame, lines: DataFrame) -> DataFrame:
    """``silver_orders`` plus one row per order and product of the sold lines (their quantities and amounts
    summed: a product on two lines of one order is one order of it; status Placed when the export has none);
    orders the lines hold are taken from the lines only."""
    first = F.struct("order_datetime", "line_id")
    from_lines = _sales(lines).groupBy("order_id", "customer_id", "product_id").agg(
        F.min_by("product_name", first).alias("product_name"), F.min_by("category", first).alias("category"),
        F.sum("quantity").cast("int").alias("quantity"),
        F.sum("line_amount").cast("decimal(18,2)").alias("total_amount"),
        F.min("order_datetime").alias("order_datetime"),
        F.coalesce(F.min_by("order_status", first), F.lit(PLACED)).alias("order_status"),
        F.min_by("payment_method", first).alias("payment_method"), F.lit(False).alias("is_subscription"),
        F.min_by("event_id", first).alias("event_id"))
    from_lines = from_lines.withColumn("order_date", F.to_date("order_datetime"))
    kept = orders.join(lines.select("order_id").distinct(), "order_id", "left_anti")
    return kept.unionByName(_conform(from_lines, "silver_orders"))


def transaction_rows(transactions: DataFrame, lines: DataFrame) -> DataFrame:
    """``silver_transactions`` plus one purchase per order with a sold line: the sold lines' amounts and quantities
    summed, the order's first time, and its first line's channel (Online when the export has none) and payment;
    Cancelled when every line is. An order whose lines name several customers (real exports have them: one
    person under several ids) is a purchase of each, of their own lines: spend per customer is the sum of their
    lines, whatever the order id says."""
    first = F.struct("order_datetime", "line_id")
    orders = _sales(lines).groupBy("order_id", "customer_id").agg(
        F.sum("line_amount").cast("decimal(18,2)").alias("amount"),
        F.sum("quantity").cast("int").alias("quantity"),
        F.min("order_datetime").alias("transaction_datetime"),
        F.min_by("channel", first).alias("channel"),
        F.min_by("payment_method", first).alias("payment_method"),
        F.bool_and(F.coalesce(F.col("order_status") == CANCELLED, F.lit(False))).alias("cancelled"),
        F.min_by("event_id", first).alias("event_id"))
    ts = F.col("transaction_datetime")
    from_lines = orders.select(
        F.col("order_id").alias("transaction_id"), "customer_id", "quantity", "amount", "transaction_datetime",
        "payment_method", F.when(F.col("cancelled"), F.lit(CANCELLED)).otherwise(F.lit(COMPLETED)).alias("status"),
        F.coalesce("channel", F.lit(ONLINE)).alias("channel"), F.to_date(ts).alias("transaction_date"),
        F.year(ts).alias("transaction_year"), F.month(ts).alias("transaction_month"),
        F.hour(ts).alias("transaction_hour"), "event_id")
    kept = transactions.join(lines.select(F.col("order_id").alias("transaction_id")).distinct(), "transaction_id",
                             "left_anti")
    return kept.unionByName(_conform(from_lines, "silver_transactions"))


def refund_rows(refunds: DataFrame, lines: DataFrame) -> DataFrame:
    """``silver_refunds`` plus one refund per returned line (a negative quantity or amount: a return, a credit
    note's line), of its product, for the line's amount as a positive number."""
    from_lines = lines.where(F.col("is_return")).select(
        F.concat(F.lit("return:"), F.col("line_id")).alias("refund_id"), "order_id", "customer_id", "product_id",
        F.abs("line_amount").cast("decimal(18,2)").alias("refund_amount"),
        F.col("order_datetime").alias("refund_datetime"), F.col("order_date").alias("refund_date"),
        F.lit("return").alias("reason"), "event_id")
    return refunds.unionByName(_conform(from_lines, "silver_refunds"))
