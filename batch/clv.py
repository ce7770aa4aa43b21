"""``gold_customer_clv`` and ``gold_clv_model`` (seeds 002 and 003): historical and predicted customer lifetime value.

- ``historical_clv``: total spend net of refunds (``batch.spend``); ``clv_tier`` (seed 002): Platinum >= 1000,
  Gold >= 500, Silver >= 200, else Bronze (thresholds ``business.clv_*_min``).
- ``predicted_clv_3yr``: BG/NBD x Gamma-Gamma (``batch.clv_model``) over ``business.clv_months`` months,
  discounted at ``business.clv_annual_discount``, with ``p_alive`` and ``expected_purchases``. The summary is
  built from purchases (gross purchase values: the models describe buying, refunds stay in historical CLV)
  with the observation ending on the earlier of the refresh day and the last purchase day in silver, so a lake
  that is not yet current does not make every customer look gone.
- ``gold_clv_model``: the fitted parameters, log-likelihoods and customer counts of the run (one row). The models
  are fitted on a seeded random sample of ``business.clv_fit_sample`` buyers (0: all), predictions
  made for every buyer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch import clv_model
from lakehouse.errors import C360Error
from lakehouse.functions import days_between, round_half_up

TABLE = "gold_customer_clv"
MODEL_TABLE = "gold_clv_model"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClvParams:
    as_of: date
    platinum_min: float = 1000.0
    gold_min: float = 500.0
    silver_min: float = 200.0
    months: int = 36
    annual_discount: float = 0.10
    time_unit: str = "W"
    fit_sample: int = 200_000


def clv_tier(historical: str, p: ClvParams):
    value = F.col(historical)
    return (F.when(value.isNull(), F.lit(None).cast("string"))
            .when(value >= p.platinum_min, F.lit("Platinum"))
            .when(value >= p.gold_min, F.lit("Gold"))
            .when(value >= p.silver_min, F.lit("Silver"))
            .otherwise(F.lit("Bronze")))


def model_summary(summary: DataFrame, *, observation_end: date, time_unit: str) -> DataFrame:
    """The Fader-Hardie summary per customer, in Spark (the same conventions as ``clv_model.summarize``), from
    ``batch.spend.purchase_summary`` rows built with the same ``observation_end`` (or a later one, when no
    purchase falls between the two)."""
    unit = clv_model.DAYS_PER_UNIT[time_unit]
    frequency = (F.col("obs_days") - 1).cast("double")
    return summary.where(F.col("obs_days") > 0).select(
        "customer_id",
        frequency.alias("frequency"),
        (days_between("obs_last_day", "obs_first_day") / unit).cast("double").alias("recency"),
        (days_between(F.lit(observation_end), "obs_first_day") / unit).cast("double").alias("T"),
        F.when(frequency > 0, (F.col("obs_total") - F.col("obs_first_amount")).cast("double") / frequency)
        .otherwise(0.0).cast("double").alias("monetary"),
    )


PREDICTION_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()), T.StructField("frequency", T.DoubleType()),
    T.StructField("recency", T.DoubleType()), T.StructField("T", T.DoubleType()),
    T.StructField("monetary", T.DoubleType()), T.StructField("p_alive", T.DoubleType()),
    T.StructField("expected_purchases", T.DoubleType()), T.StructField("expected_value", T.DoubleType()),
    T.StructField("predicted_clv", T.DoubleType()),
])


def fit_and_predict(spark: SparkSession, purchase_summary: DataFrame, p: ClvParams) -> tuple[DataFrame, dict]:
    """Fit both models on the summary and predict every customer: (predictions, model row).

    ``purchase_summary``: ``batch.spend.purchase_summary`` rows with ``observation_end=p.as_of``; the observation
    ends on the earlier of ``p.as_of`` and the last purchase day (no purchase lies between the two)."""
    last_day = purchase_summary.agg(F.max(F.to_date("last_purchase_at"))).first()[0]
    end = min(p.as_of, last_day) if last_day else p.as_of
    # in customer order: the fit's sums (its log-likelihood) then add up in one order whichever engine and partitions
    # produced the rows, so both engines give the same model to the last digit
    summary = model_summary(purchase_summary, observation_end=end, time_unit=p.time_unit).toPandas() \
        .sort_values("customer_id", kind="stable").reset_index(drop=True)
    model = {"as_of": p.as_of, "observation_end": end, "time_unit": p.time_unit, "customers": len(summary),
             "repeat_customers": int((summary["frequency"] > 0).sum()) if len(summary) else 0}
    fit_on = summary
    if 0 < p.fit_sample < len(summary):  # seeded, of sorted rows: the same silver gives the same sample
        fit_on = summary.sample(p.fit_sample, random_state=42)
    model["fitted_on"] = len(fit_on)
    try:
        bg = clv_model.fit_bgnbd(fit_on["frequency"], fit_on["recency"], fit_on["T"])
        gg = clv_model.fit_gamma_gamma(fit_on["frequency"], fit_on["monetary"])
    except C360Error as exc:  # too little data for a model: predictions stay empty, historical CLV is still there
        log.warning("CLV model not fitted: %s", exc)
        empty = {c: float("nan") for c in ("p_alive", "expected_purchases", "expected_value", "predicted_clv")}
        predictions = summary.assign(**empty)
        model |= {"fitted": False}
    else:
        predictions = pd.concat([summary.reset_index(drop=True), clv_model.predicted_clv(
            bg, gg, summary, months=p.months, annual_discount=p.annual_discount,
            time_unit=p.time_unit).reset_index(drop=True)], axis=1)
        model |= {"fitted": True, "bgnbd_r": bg.r, "bgnbd_alpha": bg.alpha, "bgnbd_a": bg.a, "bgnbd_b": bg.b,
                  "bgnbd_log_likelihood": bg.log_likelihood, "gg_p": gg.p, "gg_q": gg.q, "gg_v": gg.v,
                  "gg_log_likelihood": gg.log_likelihood}
    predictions = predictions[[f.name for f in PREDICTION_SCHEMA.fields]]
    return spark.createDataFrame(predictions, PREDICTION_SCHEMA), model


def transform_clv(spend: DataFrame, predictions: DataFrame, p: ClvParams) -> DataFrame:
    """Spend rows (``batch.spend``) + model predictions -> one CLV row per customer with a purchase."""
    nan_to_null = [F.when(~F.isnan(c), F.col(c)).alias(c) for c in
                   ("p_alive", "expected_purchases", "expected_value")]
    return (spend.where(F.col("order_count") > 0)
            .select("customer_id", F.col("total_spend").alias("historical_clv"), "order_count",
                    "avg_order_value", "first_purchase_at", "last_purchase_at")
            .withColumn("clv_tier", clv_tier("historical_clv", p))
            .join(predictions.select(
                "customer_id", "frequency", "recency", F.col("T").alias("age"), "monetary", *nan_to_null,
                F.when(~F.isnan("predicted_clv"), round_half_up("predicted_clv", 2).cast("decimal(18,2)"))
                .alias("predicted_clv_3yr")), "customer_id", "left"))


MODEL_SCHEMA = T.StructType(
    [T.StructField("as_of", T.DateType()), T.StructField("observation_end", T.DateType()),
     T.StructField("time_unit", T.StringType()), T.StructField("customers", T.LongType()),
     T.StructField("repeat_customers", T.LongType()), T.StructField("fitted_on", T.LongType()),
     T.StructField("fitted", T.BooleanType())]
    + [T.StructField(name, T.DoubleType()) for name in (
        "bgnbd_r", "bgnbd_alpha", "bgnbd_a", "bgnbd_b", "bgnbd_log_likelihood", "gg_p", "gg_q", "gg_v",
        "gg_log_likelihood")])


def model_row(spark: SparkSession, model: dict) -> DataFrame:
    return spark.createDataFrame([tuple(model.get(f.name) for f in MODEL_SCHEMA.fields)], MODEL_SCHEMA)
