"""Paths and settings: the one module that reads the environment.

Everything else asks :func:`settings` (or the path constants) instead of ``os.environ``.

Environment variables
---------------------
MKTLAB_DATA_DIR        where ``raw/``, ``interim/``, ``processed/`` live (default ``<repo>/data``)
MKTLAB_MODELS_DIR      the BentoML model store (default ``<repo>/models``)
MLFLOW_TRACKING_URI    MLflow tracking + registry (default ``sqlite:///<repo>/mlruns/mlflow.db``)
MKTLAB_MLRUNS_DIR      folder for the default SQLite store and artifacts (default ``<repo>/mlruns``)
MKTLAB_REDIS_URL       Redis for the coupon issuer; unset means an embedded redis-server
MKTLAB_LEDGER_URL      SQLAlchemy URL of the issue ledger; unset means SQLite under data/
MKTLAB_SHARED_DATA_DIR where shared read-only data sits (default ``<repo>/../shared/data``)
MKTLAB_BUS             event bus backend of the live loop: ``redis`` (default: Redis Streams on
                       the issuer's Redis) or ``rabbitmq``
MKTLAB_AMQP_URL        RabbitMQ URL for ``MKTLAB_BUS=rabbitmq`` (default ``amqp://guest:guest@127.0.0.1:5672/%2F``)
MKTLAB_BUS_PARTITIONS  partitions of the event bus (default 8); one user's events stay in one
MKTLAB_DELIVERY_URL    SQLAlchemy URL of the message delivery log; unset means SQLite under data/
MKTLAB_LIVE_NAMESPACE  key / queue prefix of the live loop (default ``mktlab:live``)
MKTLAB_DB_URL          SQLAlchemy URL of the campaign registry (campaigns, versions, approvals,
                       audit, API keys); unset means SQLite under data/processed/
MKTLAB_API_KEY         the API key the CLI acts with (else the local admin key file)
MKTLAB_EVENT_TYPES     comma-separated event types the bus accepts (unset: any); others are
                       dead-lettered as ``unknown_event``
MKTLAB_CLICKHOUSE_URL  a ClickHouse server for audiences (``engine="clickhouse"``), e.g.
                       ``http://default:@127.0.0.1:8123/default``; unset: none (chdb runs in process)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mktlab.errors import ConfigError

PROJ_ROOT = Path(__file__).resolve().parents[1]


def _path(env: str, default: Path) -> Path:
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        return default
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build one with :func:`settings`; override fields in tests."""

    data_dir: Path
    models_dir: Path
    mlruns_dir: Path
    shared_data_dir: Path
    mlflow_tracking_uri: str
    redis_url: str | None = None
    ledger_url: str | None = None
    bus: str = "redis"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    bus_partitions: int = 8
    delivery_url: str | None = None
    live_namespace: str = "mktlab:live"
    event_types: tuple[str, ...] | None = None
    db_url: str | None = None
    api_key: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def interim_dir(self) -> Path:
        return self.data_dir / "interim"

    @property
    def processed_dir(self) -> Path:
        return self.data_dir / "processed"

    @property
    def world_dir(self) -> Path:
        return self.raw_dir / "world"

    @property
    def default_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.data_dir / 'processed' / 'ledger.db'}"

    @property
    def default_delivery_url(self) -> str:
        return self.delivery_url or f"sqlite:///{self.data_dir / 'processed' / 'deliveries.db'}"

    @property
    def default_campaign_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'processed' / 'campaigns.db'}"

    @property
    def admin_key_path(self) -> Path:
        """Where ``make demo`` leaves the local admin API key (mode 0600)."""
        return self.processed_dir / "admin.key"

    @property
    def live_dir(self) -> Path:
        """Where the live loop keeps its decision log and journey definitions."""
        return self.processed_dir / "live"


def settings() -> Settings:
    """Read the environment now and return the resolved :class:`Settings`."""
    data_dir = _path("MKTLAB_DATA_DIR", PROJ_ROOT / "data")
    mlruns_dir = _path("MKTLAB_MLRUNS_DIR", PROJ_ROOT / "mlruns")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir / 'mlflow.db'}"
    if uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks")):
        raise ConfigError(
            f"MLFLOW_TRACKING_URI={uri!r}: the MLflow file store is deprecated and refused by "
            "MLflow 3.17; use sqlite:///<absolute path>/mlflow.db or an http(s):// server"
        )
    redis_url = os.environ.get("MKTLAB_REDIS_URL") or None
    if redis_url and not redis_url.startswith(
        ("redis://", "rediss://", "unix://", "redis+cluster://")
    ):
        raise ConfigError(
            f"MKTLAB_REDIS_URL={redis_url!r}: expected redis://, rediss://, unix:// or redis+cluster://"
        )
    bus = (os.environ.get("MKTLAB_BUS") or "redis").strip().lower()
    if bus not in ("redis", "rabbitmq"):
        raise ConfigError(f"MKTLAB_BUS={bus!r}: expected 'redis' or 'rabbitmq'")
    raw_parts = os.environ.get("MKTLAB_BUS_PARTITIONS") or "8"
    try:
        parts = int(raw_parts)
    except ValueError:
        parts = 0
    if not 1 <= parts <= 1024:
        raise ConfigError(f"MKTLAB_BUS_PARTITIONS={raw_parts!r}: expected an integer in 1..1024")
    return Settings(
        data_dir=data_dir,
        models_dir=_path("MKTLAB_MODELS_DIR", PROJ_ROOT / "models"),
        mlruns_dir=mlruns_dir,
        shared_data_dir=_path("MKTLAB_SHARED_DATA_DIR", PROJ_ROOT.parent / "shared" / "data"),
        mlflow_tracking_uri=uri,
        redis_url=redis_url,
        ledger_url=os.environ.get("MKTLAB_LEDGER_URL") or None,
        bus=bus,
        amqp_url=os.environ.get("MKTLAB_AMQP_URL") or Settings.amqp_url,
        bus_partitions=parts,
        delivery_url=os.environ.get("MKTLAB_DELIVERY_URL") or None,
        live_namespace=(os.environ.get("MKTLAB_LIVE_NAMESPACE") or "mktlab:live").strip(),
        event_types=_event_types(os.environ.get("MKTLAB_EVENT_TYPES")),
        db_url=os.environ.get("MKTLAB_DB_URL") or None,
        api_key=os.environ.get("MKTLAB_API_KEY") or None,
    )


def _event_types(raw: str | None) -> tuple[str, ...] | None:
    if not raw or not raw.strip():
        return None
    names = tuple(sorted({n.strip() for n in raw.split(",") if n.strip()}))
    bad = [n for n in names if not n.replace("_", "").replace("-", "").replace(".", "").isalnum()]
    if bad:
        raise ConfigError(f"MKTLAB_EVENT_TYPES: bad event type name(s) {bad}")
    return names


def env_flag(name: str, default: bool = False) -> bool:
    """Return a boolean environment flag (``1/true/yes`` are true)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def clickhouse_url() -> str | None:
    """``MKTLAB_CLICKHOUSE_URL``: the ClickHouse server of the audience engine, or None."""
    raw = (os.environ.get("MKTLAB_CLICKHOUSE_URL") or "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://", "clickhouse://", "clickhouses://")):
        raise ConfigError(
            f"MKTLAB_CLICKHOUSE_URL={raw!r}: expected http(s)://user:password@host:8123/database"
        )
    return raw


def bentoml_home() -> Path:
    """BentoML's home (its model store lives under it): ``BENTOML_HOME`` or ``models/``."""
    return _path("BENTOML_HOME", settings().models_dir)


def quiet_tools() -> None:
    """Switch off telemetry of MLflow and BentoML unless the user set otherwise.

    Called before those libraries are imported; this machine and CI have no internet.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


# --- the model service (issue 10) ----------------------------------------------------
@dataclass(frozen=True)
class ServiceSettings:
    """Settings of the BentoML model service (``mktlab.service``).

    Environment: ``MKTLAB_SERVICE_HOST`` / ``_PORT`` / ``_WORKERS``, ``MKTLAB_UPLIFT_THRESHOLD``
    (treat when predicted uplift >= it), ``MKTLAB_SERVICE_MAX_BATCH`` (rows or journeys per
    request), ``MKTLAB_SERVICE_MAX_BODY`` (bytes), ``MKTLAB_SERVICE_NAMESPACE`` (Redis key
    prefix of the issuer and the service; tests sharing one Redis use their own),
    ``MKTLAB_SERVICE_THREADS`` (request threads per worker, default 16: a request spends
    most of its time waiting for Redis and the ledger, and 4 threads left the 2-core
    benchmark machine idle at ~400 /issue req/s where 16 reach ~900),
    ``MKTLAB_ISSUE_DURABILITY`` (``ledger``: answer after the ledger commit; ``outbox``:
    answer once Redis decided, a background drainer commits to the ledger).
    """

    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 1
    uplift_threshold: float = 0.01
    max_batch: int = 1000
    max_body_bytes: int = 2_000_000
    namespace: str = "mktlab:cp"
    threads: int = 16
    durability: str = "ledger"


def _env_number(name: str, default, kind):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a {kind.__name__}") from None


def service_settings() -> ServiceSettings:
    """Read the service's settings from the environment now."""
    s = ServiceSettings(
        host=os.environ.get("MKTLAB_SERVICE_HOST") or ServiceSettings.host,
        port=_env_number("MKTLAB_SERVICE_PORT", ServiceSettings.port, int),
        workers=_env_number("MKTLAB_SERVICE_WORKERS", ServiceSettings.workers, int),
        uplift_threshold=_env_number(
            "MKTLAB_UPLIFT_THRESHOLD", ServiceSettings.uplift_threshold, float
        ),
        max_batch=_env_number("MKTLAB_SERVICE_MAX_BATCH", ServiceSettings.max_batch, int),
        max_body_bytes=_env_number("MKTLAB_SERVICE_MAX_BODY", ServiceSettings.max_body_bytes, int),
        namespace=os.environ.get("MKTLAB_SERVICE_NAMESPACE") or ServiceSettings.namespace,
        threads=_env_number("MKTLAB_SERVICE_THREADS", ServiceSettings.threads, int),
        durability=os.environ.get("MKTLAB_ISSUE_DURABILITY") or ServiceSettings.durability,
    )
    if s.durability not in ("ledger", "outbox"):
        raise ConfigError(
            f"MKTLAB_ISSUE_DURABILITY={s.durability!r}: expected 'ledger' or 'outbox'"
        )
    for name in ("port", "workers", "threads", "max_batch", "max_body_bytes"):
        if getattr(s, name) < 1:
            raise ConfigError(f"service setting {name}={getattr(s, name)}: must be >= 1")
    return s


def use_bentoml_home() -> Path:
    """Point BentoML at :func:`bentoml_home` (``BENTOML_HOME``) before it is imported."""
    home = bentoml_home()
    os.environ["BENTOML_HOME"] = str(home)
    quiet_tools()
    return home


def child_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (e.g. ``bentoml serve``): ours plus ``overrides``."""
    env = dict(os.environ)
    env.update(overrides or {})
    return env


# --- the Spark engine of identity and batch scoring (issue 17) ---------------------
@dataclass(frozen=True)
class SparkSettings:
    """Settings of the SparkSession that ``resolve(..., engine="spark")`` and Spark scoring use.

    Environment: ``MKTLAB_SPARK_MASTER`` (default ``local[2]``; a cluster's ``spark://`` /
    ``yarn`` / ``k8s://`` URL), ``MKTLAB_SPARK_DRIVER_MEMORY`` (default ``4g``; raise it when
    a job fails with OutOfMemoryError), ``MKTLAB_SPARK_EXECUTOR_MEMORY`` (unset: Spark's
    default), ``MKTLAB_SPARK_SHUFFLE_PARTITIONS`` (default 8: small data on a laptop; a
    cluster wants a few per executor core), ``MKTLAB_SPARK_LOCAL_DIR`` (scratch space,
    default Spark's). The JVM is found by pyspark itself (``JAVA_HOME`` or ``java`` on PATH).
    """

    master: str = "local[2]"
    driver_memory: str = "4g"
    executor_memory: str | None = None
    shuffle_partitions: int = 8
    local_dir: str | None = None
    java_home: str | None = None


def spark_settings() -> SparkSettings:
    """Read the Spark engine's settings from the environment now."""
    s = SparkSettings(
        master=(os.environ.get("MKTLAB_SPARK_MASTER") or SparkSettings.master).strip(),
        driver_memory=(
            os.environ.get("MKTLAB_SPARK_DRIVER_MEMORY") or SparkSettings.driver_memory
        ).strip(),
        executor_memory=(os.environ.get("MKTLAB_SPARK_EXECUTOR_MEMORY") or "").strip() or None,
        shuffle_partitions=_env_number(
            "MKTLAB_SPARK_SHUFFLE_PARTITIONS", SparkSettings.shuffle_partitions, int
        ),
        local_dir=(os.environ.get("MKTLAB_SPARK_LOCAL_DIR") or "").strip() or None,
        java_home=(os.environ.get("JAVA_HOME") or "").strip() or None,
    )
    if not 1 <= s.shuffle_partitions <= 100_000:
        raise ConfigError(
            f"MKTLAB_SPARK_SHUFFLE_PARTITIONS={s.shuffle_partitions}: expected 1..100000"
        )
    for name, val in (("DRIVER", s.driver_memory), ("EXECUTOR", s.executor_memory)):
        if val is not None and (not val[:-1].isdigit() or val[-1].lower() not in "kmgt"):
            raise ConfigError(
                f"MKTLAB_SPARK_{name}_MEMORY={val!r}: expected a size like 4g or 512m"
            )
    return s


def use_spark_python() -> None:
    """Make Spark's Python workers run this interpreter unless ``PYSPARK_PYTHON`` says otherwise."""
    import sys

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
