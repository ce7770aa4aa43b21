"""``gold_rfm_segments`` (seed 002, use cases 2 and 5): RFM scores, named segments and churn risk.

Per customer with at least one purchase (``batch.spend``): recency = days since the last purchase, frequency =
purchases, monetary = total spend net of refunds. Each is scored 1-5 by quintile of its rank among all buyers
(``1 + floor(5 x percent_rank)``, capped at 5; a short recency scores high): equal values always get the same
score, so a score's group can be larger than a fifth when many customers tie (e.g. one purchase).

The segment is the first rule of ``SEGMENT_RULES`` whose ranges hold (inclusive; docs/gold.md has the table);
``CHURN_RISK`` maps segments to seed 002's churn risk levels.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

TABLE = "gold_rfm_segments"

# (segment, (R min, R max), (F min, F max), (M min, M max)): the first match wins.
SEGMENT_RULES: tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    ("Champions", (4, 5), (4, 5), (4, 5)),            # high R, F and M
    ("Can't Lose Them", (1, 2), (5, 5), (5, 5)),      # low R, very high F and M
    ("At Risk", (1, 2), (3, 5), (3, 5)),              # low R, high F and M
    ("Loyal Customers", (3, 5), (3, 5), (3, 5)),      # high F and M, good R
    ("New Customers", (4, 5), (1, 2), (1, 5)),        # high R, low F
    ("Potential Loyalists", (3, 5), (2, 5), (1, 5)),  # good R and F
    ("Lost", (1, 2), (1, 2), (1, 2)),                 # low across all
    ("Hibernating", (1, 2), (1, 2), (1, 5)),          # low R and F
    ("Needs Attention", (1, 5), (1, 5), (1, 5)),      # everything else (middling R, or low R with mixed F/M)
)

CHURN_RISK = {  # seed 002, use case 5
    "Hibernating": "Critical", "Lost": "Critical",
    "At Risk": "High", "Can't Lose Them": "High",
    "Needs Attention": "Medium",
}
LOW_RISK = "Low"  # every other segment


def quintile_score(value: str, *, high_is_good: bool = True) -> Column:
    """1-5 by quintile of rank: ``1 + floor(5 x percent_rank)``, capped at 5 (ties share a score)."""
    order = F.col(value).asc() if high_is_good else F.col(value).desc()
    rank = F.percent_rank().over(Window.orderBy(order))
    return F.least(F.floor(rank * 5) + 1, F.lit(5)).cast("int")


def segment_of(r: Column, f: Column, m: Column) -> Column:
    expr = None
    for name, (r_lo, r_hi), (f_lo, f_hi), (m_lo, m_hi) in SEGMENT_RULES:
        cond = r.between(r_lo, r_hi) & f.between(f_lo, f_hi) & m.between(m_lo, m_hi)
        expr = F.when(cond, F.lit(name)) if expr is None else expr.when(cond, F.lit(name))
    return expr


def churn_risk_of(segment: Column) -> Column:
    expr = F.when(segment.isNull(), F.lit(None).cast("string"))
    for name, risk in CHURN_RISK.items():
        expr = expr.when(segment == name, F.lit(risk))
    return expr.otherwise(F.lit(LOW_RISK))


def transform_rfm(spend: DataFrame) -> DataFrame:
    """``batch.spend.customer_spend`` rows -> one RFM row per customer with a purchase."""
    buyers = spend.where(F.col("order_count") > 0).select(
        "customer_id",
        F.col("days_since_last_purchase").alias("recency_days"),
        F.col("order_count").alias("frequency"),
        F.col("total_spend").alias("monetary"),
        "last_purchase_at",
    )
    scored = (buyers.withColumn("r_score", quintile_score("recency_days", high_is_good=False))
              .withColumn("f_score", quintile_score("frequency"))
              .withColumn("m_score", quintile_score("monetary")))
    segment = segment_of(F.col("r_score"), F.col("f_score"), F.col("m_score"))
    return (scored.withColumn("rfm_score", F.concat_ws("", "r_score", "f_score", "m_score"))
            .withColumn("customer_segment", segment)
            .withColumn("churn_risk", churn_risk_of(F.col("customer_segment"))))
