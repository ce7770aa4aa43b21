"""One typed, frozen configuration object.

Layers, later wins: the committed defaults (``lakehouse/defaults.toml``), an optional TOML file of the same
shape (``--config`` or ``C360_CONFIG``), environment variables ``C360_<SECTION>_<KEY>``, and CLI flags.
Transforms never read configuration themselves: entry points pass them the values they need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from lakehouse.errors import C360Error
from lakehouse.mappings import Mappings, check_pattern, merge_tables, parse_mappings

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
# Secrets never enter the configuration (it is printed by `c360 config`): read from these variables only.
SASL_PASSWORD_ENV = "C360_KAFKA_SASL_PASSWORD"
SSL_KEY_PASSWORD_ENV = "C360_KAFKA_SSL_KEY_PASSWORD"
SECRETS = {"kafka": {"sasl_password": SASL_PASSWORD_ENV, "ssl_key_password": SSL_KEY_PASSWORD_ENV}}
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
UNKNOWN_FIELD_RULES = ("rescue", "quarantine")  # stream.unknown_fields (docs/input-contract.md, "Schema evolution")
# Keys and values Spark redacts in its logs and UI (its default plus JAAS and PEM keys); spark.conf refuses such keys
SECRET_PATTERN = r"(?i)secret|password|token|access[.]?key|jaas|keystore[.]key|private key"
# spark.conf keys that have a c360 setting of their own, or that c360's correctness depends on
SPARK_KEYS_OWNED = {
    "spark.master": "set spark.master (C360_SPARK_MASTER, --master)",
    "spark.driver.memory": "set spark.driver_memory or gold.driver_memory (--driver-memory)",
    "spark.sql.shuffle.partitions": "set spark.shuffle_partitions",
    "spark.databricks.delta.snapshotPartitions": "set spark.shuffle_partitions",
    "spark.ui.enabled": "set spark.ui_enabled",
    "spark.sql.session.timeZone": "set spark.timezone",
    "spark.memory.offHeap.size": "set gold.accelerator_memory",
    "spark.sql.catalog.spark_catalog": "c360's tables need Delta's catalog",
    "spark.databricks.delta.schema.autoMerge.enabled": "c360 evolves its tables' schemas itself",
    "spark.sql.streaming.stopGracefullyOnShutdown": "c360 stops its queries gracefully itself",
}
# ...and with a local master, where c360 binds the driver to spark.bind_address
SPARK_KEYS_OWNED_LOCAL = {"spark.driver.bindAddress": "set spark.bind_address",
                          "spark.driver.host": "set spark.bind_address"}
# spark.conf's type: Spark settings as (key, value) pairs, sorted (the configuration is frozen)
Settings = tuple[tuple[str, str], ...]
# gold.accelerator: Spark's own engine, Apache DataFusion Comet's native one, or Comet where it runs (Linux x86_64/aarch64)
BATCH_ENGINES = ("auto", "embedded", "spark")
# the stream's Delta writer: delta-rs in the driver (embedded), Spark's, or embedded with a local master (auto)
STREAM_WRITERS = ("auto", "embedded", "spark")
GOLD_ACCELERATORS = ("none", "comet", "auto")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str
    local_host: str
    local_port: int
    local_controller_port: int
    topic_prefix: str
    partitions: int
    retention_hours: int
    connect_timeout_s: float
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    ssl_ca_location: str
    ssl_certificate_location: str
    ssl_key_location: str
    ssl_check_hostname: bool

    @property
    def embedded(self) -> bool:
        """True when c360 uses its own local broker rather than an external cluster."""
        return not self.bootstrap

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or f"{self.local_host}:{self.local_port}"

    def topic(self, source: str) -> str:
        return f"{self.topic_prefix}{source}"


@dataclass(frozen=True)
class LakeConfig:
    root: str
    checkpoint_root: str
    state_dir: str
    data_dir: str


@dataclass(frozen=True)
class SparkConfig:
    master: str
    driver_memory: str
    shuffle_partitions: int
    ui_enabled: bool
    bind_address: str
    timezone: str
    class_data_sharing: bool
    scratch_dir: str  # "": <lake.state_dir>/scratch (lakehouse.scratch)
    conf: Settings  # any other Spark settings (executor memory, a cluster's options, object store connectors)

    @property
    def settings(self) -> dict[str, str]:
        """``conf`` as a dict."""
        return dict(self.conf)


@dataclass(frozen=True)
class StreamConfig:
    trigger_interval: str
    derived_trigger_interval: str
    max_offsets_per_trigger: int
    starting_offsets: str
    fail_on_data_loss: bool
    unknown_fields: str
    timestamp_formats: tuple[str, ...]
    quarantine_failure_share: float
    scheduler_pools: bool
    anomaly_watermark: str
    burst_logins: int
    burst_window_s: int
    short_gap_s: int
    reactivation_days: int
    anomaly_state_ttl_days: int
    alerts_topic: str
    city_hour_watermark: str
    maintenance_interval_minutes: int
    vacuum_retention_hours: int
    broker_outage_s: int
    parallel_sources: int
    writer: str  # auto | embedded | spark (streaming/embedded.py)
    embedded_max_offsets_per_trigger: int


@dataclass(frozen=True)
class BusinessConfig:
    churn_at_risk_days: int
    churn_churned_days: int
    evening_hour: int
    never_logged_in_label: str
    report_year: int
    report_month: str
    purchase_churn_days: int
    omnichannel_min_share: float
    spend_tier_gold_above: float
    spend_tier_silver_above: float
    clv_platinum_min: float
    clv_gold_min: float
    clv_silver_min: float
    clv_months: int
    clv_annual_discount: float
    clv_time_unit: str
    clv_fit_sample: int
    engagement_weight_registration: float
    engagement_weight_login_frequency: float
    engagement_weight_activity_gap: float
    engagement_weight_status: float
    engagement_logins_per_month_target: float
    engagement_registration_horizon_days: int
    customer_360_population: str


@dataclass(frozen=True)
class GoldConfig:
    driver_memory: str
    accelerator: str
    accelerator_memory: str
    export_dir: str
    export_csv: bool
    export_parquet: bool
    mask_pii: bool


@dataclass(frozen=True)
class BatchConfig:
    engine: str  # auto | embedded | spark (lakehouse/engine.py)
    embedded_memory: str  # auto or a size: the embedded engine's memory pool
    nice: int  # how far below the stream's CPU priority batch work runs (Unix nice, 0-19)


@dataclass(frozen=True)
class DashboardConfig:
    file: str
    refresh_after_gold: bool
    host: str
    port: int
    refresh_seconds: float
    mask_pii: bool
    balance_above: float
    top_customers: int
    latest_anomalies: int
    cities: int


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    lake: LakeConfig
    spark: SparkConfig
    stream: StreamConfig
    business: BusinessConfig
    gold: GoldConfig
    batch: BatchConfig
    dashboard: DashboardConfig
    # [sources.<source>]: the user's source mappings (lakehouse/mappings.py); the built-in ones are implicit
    sources: Mappings = ()

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some values of one section changed (values are checked like any other layer)."""
        return load(overrides={section: values}, base=self)


_SECTIONS: dict[str, type] = {
    "kafka": KafkaConfig,
    "lake": LakeConfig,
    "spark": SparkConfig,
    "stream": StreamConfig,
    "business": BusinessConfig,
    "gold": GoldConfig,
    "batch": BatchConfig,
    "dashboard": DashboardConfig,
}


# the (section, field) pairs that hold a table of settings (spark.conf): merged key by key, printed as tables
SETTINGS_FIELDS = {(section, name) for section, cls in _SECTIONS.items()
                   for name, hint in typing.get_type_hints(cls).items() if hint == Settings}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert a value from TOML or the environment to the declared type, or say what is wrong."""
    if typ == Settings:
        return tuple(sorted(_settings(value, where).items()))
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            return int(str(value).strip())
        if typ is float:
            return float(str(value).strip())
        if typ is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
    except (TypeError, ValueError):
        pass
    else:
        return value
    name = getattr(typ, "__name__", str(typ))
    raise C360Error(f"bad config value for {where}: {value!r} is not a valid {name}")


def _settings(value: Any, where: str) -> dict[str, str]:
    """Spark settings from any layer as a dict: a TOML table (``"spark.executor.memory" = "8g"``; unquoted dotted
    keys, which TOML nests, are joined again), a JSON object (the environment), or (key, value) pairs."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not JSON: refused below, with what it was
            value = json.loads(value) if value.strip() else {}
    if isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, Mapping):
        raise C360Error(f"bad config value for {where}: expected a table of Spark settings (in the environment a "
                        f'JSON object like {{"spark.executor.memory": "8g"}}), got {value!r}')
    flat: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            flat.update({f"{key}.{k}": v for k, v in _settings(item, where).items()})
        elif isinstance(item, bool):
            flat[str(key)] = str(item).lower()
        elif isinstance(item, (str, int, float)):
            flat[str(key)] = str(item)
        else:
            raise C360Error(f"bad config value for {where}: {key} = {item!r} is not a string, number or boolean")
    return flat


def _settings_problem(settings: Settings, master: str) -> str | None:
    """What is wrong with ``spark.conf``, or None."""
    owned = {**SPARK_KEYS_OWNED, **(SPARK_KEYS_OWNED_LOCAL if master.startswith("local") else {})}
    for key, _ in settings:
        if not key.startswith("spark."):
            return f"spark.conf: {key!r} is not a Spark setting (they start with 'spark.')"
        if key in owned:
            return f"spark.conf: c360 sets {key} itself: {owned[key]}"
        if re.search(SECRET_PATTERN, key):
            return (f"spark.conf: {key} looks like a secret, and secrets stay out of c360's configuration (it is "
                    "printed by `c360 config`): give it to the connector another way, e.g. s3a's credential "
                    "providers read AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment")
    return None


def _validate(cfg: Config) -> None:
    spark_settings = _settings_problem(cfg.spark.conf, cfg.spark.master)
    checks = [
        (cfg.kafka.partitions >= 1, "kafka.partitions must be at least 1"),
        (1 <= cfg.kafka.local_port <= 65535, "kafka.local_port must be a TCP port (1-65535)"),
        (1 <= cfg.kafka.local_controller_port <= 65535, "kafka.local_controller_port must be a TCP port"),
        (cfg.kafka.local_port != cfg.kafka.local_controller_port,
         "kafka.local_port and kafka.local_controller_port must differ"),
        (cfg.kafka.connect_timeout_s > 0, "kafka.connect_timeout_s must be positive"),
        (cfg.kafka.security_protocol in KAFKA_PROTOCOLS,
         "kafka.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
        (cfg.kafka.sasl_mechanism in KAFKA_SASL_MECHANISMS,
         "kafka.sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
        (cfg.spark.shuffle_partitions >= 1, "spark.shuffle_partitions must be at least 1"),
        (spark_settings is None, spark_settings or ""),
        (cfg.stream.max_offsets_per_trigger >= 1, "stream.max_offsets_per_trigger must be at least 1"),
        *[(_is_interval(getattr(cfg.stream, key)), f"stream.{key} must be a time like '5 seconds' or '2 hours'")
          for key in ("trigger_interval", "derived_trigger_interval", "anomaly_watermark", "city_hour_watermark")],
        (cfg.stream.unknown_fields in UNKNOWN_FIELD_RULES, "stream.unknown_fields must be rescue or quarantine"),
        (bool(cfg.stream.timestamp_formats), "stream.timestamp_formats must name at least one format"),
        (cfg.stream.quarantine_failure_share > 0, "stream.quarantine_failure_share must be above 0 (above 1: never fail)"),
        (cfg.stream.burst_logins >= 2 and cfg.stream.burst_window_s > 0,
         "stream.burst_logins must be at least 2 and stream.burst_window_s positive"),
        (cfg.stream.short_gap_s >= 0, "stream.short_gap_s must not be negative"),
        (0 < cfg.stream.reactivation_days < cfg.stream.anomaly_state_ttl_days,
         "stream.reactivation_days must be positive and below stream.anomaly_state_ttl_days"),
        (cfg.stream.maintenance_interval_minutes >= 0, "stream.maintenance_interval_minutes must not be negative"),
        (cfg.stream.vacuum_retention_hours >= 1, "stream.vacuum_retention_hours must be at least 1"),
        (cfg.stream.broker_outage_s >= 10, "stream.broker_outage_s must be at least 10"),
        (cfg.stream.parallel_sources >= 1, "stream.parallel_sources must be at least 1"),
        (cfg.stream.writer in STREAM_WRITERS, "stream.writer must be auto, embedded or spark"),
        (cfg.stream.embedded_max_offsets_per_trigger >= 1, "stream.embedded_max_offsets_per_trigger must be at least 1"),
        (bool(cfg.stream.alerts_topic), "stream.alerts_topic must not be empty"),
        (0 < cfg.business.churn_at_risk_days < cfg.business.churn_churned_days,
         "business.churn_at_risk_days must be positive and below business.churn_churned_days"),
        (0 <= cfg.business.evening_hour <= 23, "business.evening_hour must be an hour 0-23"),
        (1900 <= cfg.business.report_year <= 2999, "business.report_year must be a year"),
        (_is_month(cfg.business.report_month), "business.report_month must be YYYY-MM"),
        (cfg.business.purchase_churn_days > 0, "business.purchase_churn_days must be positive"),
        (0 < cfg.business.omnichannel_min_share <= 0.5, "business.omnichannel_min_share must be in (0, 0.5]"),
        (cfg.business.spend_tier_gold_above > cfg.business.spend_tier_silver_above,
         "business.spend_tier_gold_above must be above business.spend_tier_silver_above"),
        (cfg.business.clv_platinum_min > cfg.business.clv_gold_min > cfg.business.clv_silver_min,
         "business.clv_platinum_min > clv_gold_min > clv_silver_min must hold"),
        (1 <= cfg.business.clv_months <= 120, "business.clv_months must be between 1 and 120"),
        (0 <= cfg.business.clv_annual_discount < 1, "business.clv_annual_discount must be in [0, 1)"),
        (cfg.business.clv_time_unit in ("D", "W"), "business.clv_time_unit must be D or W"),
        (cfg.business.customer_360_population in ("auto", "masters", "all"),
         "business.customer_360_population must be auto, masters or all"),
        (cfg.business.clv_fit_sample >= 0, "business.clv_fit_sample must not be negative"),
        (min(cfg.business.engagement_weight_registration, cfg.business.engagement_weight_login_frequency,
             cfg.business.engagement_weight_activity_gap, cfg.business.engagement_weight_status) >= 0
         and (cfg.business.engagement_weight_registration + cfg.business.engagement_weight_login_frequency
              + cfg.business.engagement_weight_activity_gap + cfg.business.engagement_weight_status) > 0,
         "business.engagement_weight_* must not be negative and must not all be 0"),
        (cfg.business.engagement_logins_per_month_target > 0,
         "business.engagement_logins_per_month_target must be positive"),
        (cfg.business.engagement_registration_horizon_days > 0,
         "business.engagement_registration_horizon_days must be positive"),
        (bool(cfg.gold.export_dir), "gold.export_dir must not be empty"),
        (cfg.gold.accelerator in GOLD_ACCELERATORS, "gold.accelerator must be none, comet or auto"),
        (cfg.gold.accelerator_memory == "auto" or _is_memory(cfg.gold.accelerator_memory),
         "gold.accelerator_memory must be auto or a size like '4g' or '512m'"),
        (cfg.batch.engine in BATCH_ENGINES, "batch.engine must be auto, embedded or spark"),
        (cfg.batch.embedded_memory == "auto" or _is_memory(cfg.batch.embedded_memory),
         "batch.embedded_memory must be auto or a size like '8g' or '512m'"),
        (0 <= cfg.batch.nice <= 19, "batch.nice must be 0-19 (0: the stream's own CPU priority)"),
        (bool(cfg.lake.root), "lake.root must not be empty"),
        (bool(cfg.dashboard.file), "dashboard.file must not be empty"),
        (bool(cfg.dashboard.host), "dashboard.host must not be empty"),
        (0 <= cfg.dashboard.port <= 65535, "dashboard.port must be a TCP port (0-65535; 0 = any free port)"),
        (cfg.dashboard.refresh_seconds >= 0.5, "dashboard.refresh_seconds must be at least 0.5"),
        (cfg.dashboard.balance_above >= 0, "dashboard.balance_above must not be negative"),
        (min(cfg.dashboard.top_customers, cfg.dashboard.latest_anomalies, cfg.dashboard.cities) >= 1,
         "dashboard.top_customers, latest_anomalies and cities must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise C360Error(f"bad config: {message}")
    for pattern in cfg.stream.timestamp_formats:
        check_pattern(pattern, "stream.timestamp_formats")


def as_toml(cfg: Config) -> str:
    """The configuration as TOML that pastes back into a config file (``c360 config``): every section and key,
    Spark settings as a table, and the user's source mappings as ``[sources.<source>]`` tables."""
    import tomli_w

    doc: dict[str, Any] = {}
    for section in _SECTIONS:
        values = dataclasses.asdict(getattr(cfg, section))
        doc[section] = {k: dict(v) if (section, k) in SETTINGS_FIELDS else list(v) if isinstance(v, tuple) else v
                        for k, v in values.items()}
    if cfg.sources:
        doc[SOURCES_SECTION] = {m.source: m.as_toml() for m in cfg.sources}
    return tomli_w.dumps(doc)


# a Spark interval as triggers and watermarks take it: "5 seconds", "1 minute 30 seconds", "interval 2 hours"
_INTERVAL = re.compile(r"(?i)^\s*(interval\s+)?(\d+\s+(week|day|hour|minute|second|millisecond|microsecond)s?\s*)+$")


def _is_interval(text: str) -> bool:
    return bool(_INTERVAL.match(text))


def _is_memory(text: str) -> bool:
    return re.fullmatch(r"[1-9]\d*[kmgt]", text.strip().lower()) is not None


def _is_month(text: str) -> bool:
    parts = text.split("-")
    return len(parts) == 2 and len(parts[0]) == 4 and parts[0].isdigit() and parts[1].isdigit() and \
        1 <= int(parts[1]) <= 12


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise C360Error(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise C360Error(f"config file {path} is not valid TOML: {exc}") from None


def _env_layer(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            key = f"C360_{section.upper()}_{f.name.upper()}"
            if key in environ:
                layer.setdefault(section, {})[f.name] = environ[key]
    return layer


def _as_layers(base: Config) -> dict[str, dict[str, Any]]:
    layers = {name: dataclasses.asdict(getattr(base, name)) for name in _SECTIONS}
    return {**layers, SOURCES_SECTION: {m.source: m.as_toml() for m in base.sources}}


# the section of source mappings: a table per source, merged key by key across layers (lakehouse/mappings.py)
SOURCES_SECTION = "sources"


def load(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    base: Config | None = None,
) -> Config:
    """Build the configuration from its layers.

    Args:
        config_file: a TOML file overlaying the defaults; ``C360_CONFIG`` names one when this is None.
        environ: the environment to read ``C360_*`` overrides from (``os.environ`` when None).
        overrides: the last layer, e.g. from CLI flags: ``{"kafka": {"bootstrap": "host:9092"}}``;
            None values are ignored.
        base: start from this configuration instead of the defaults (no file or environment is read).

    Raises:
        C360Error: an unknown key, a value of the wrong type, or a value out of range.
    """
    if base is not None:
        layers = [_as_layers(base)]
    else:
        env = os.environ if environ is None else environ
        layers = [_read_toml(DEFAULTS_FILE)]
        path = config_file or env.get("C360_CONFIG")
        if path:
            layers.append(_read_toml(Path(path)))
        layers.append(_env_layer(env))
    if overrides:
        layers.append({s: {k: v for k, v in vals.items() if v is not None} for s, vals in overrides.items()})

    merged: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    mappings: dict[str, Any] = {}
    for layer in layers:
        for section, values in layer.items():
            if section == SOURCES_SECTION:
                if not isinstance(values, Mapping):
                    raise C360Error("config section [sources] must hold a table per source: [sources.orders]")
                mappings = merge_tables(mappings, values)
                continue
            if section not in _SECTIONS:
                raise C360Error(f"unknown config section [{section}] (known: {', '.join(_SECTIONS)}, sources)")
            if not isinstance(values, Mapping):
                raise C360Error(f"config section [{section}] must be a table of key = value")
            for key, value in values.items():
                if (section, key) in SETTINGS_FIELDS:  # settings tables merge key by key across the layers
                    where = f"{section}.{key}"
                    value = {**_settings(merged[section].get(key, {}), where), **_settings(value, where)}
                merged[section][key] = value

    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(merged[section]) - known
        secret = sorted(unknown & set(SECRETS.get(section, {})))
        if secret:
            raise C360Error(f"{section}.{secret[0]} cannot be set in a config file or flag: secrets are read only "
                            f"from the environment ({SECRETS[section][secret[0]]})")
        if unknown:
            raise C360Error(f"unknown config key {section}.{sorted(unknown)[0]} (known: {', '.join(sorted(known))})")
        missing = known - set(merged[section])
        if missing:
            raise C360Error(f"config key {section}.{sorted(missing)[0]} has no value")
        sections[section] = cls(
            **{k: _coerce(v, hints[k], f"{section}.{k}") for k, v in merged[section].items()}
        )
    cfg = Config(**sections, sources=parse_mappings(mappings))
    _validate(cfg)
    return cfg
