"""The SparkSession of mktlab's Spark engines (identity, batch scoring), and its failures.

Imported only when a Spark engine is asked for: ``import mktlab`` needs neither pyspark
nor a JVM. The session's master and memory come from :func:`mktlab.config.spark_settings`
(``MKTLAB_SPARK_*``); a session the caller already started (a notebook's, a cluster's) is
used as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mktlab.config import spark_settings, use_spark_python
from mktlab.errors import ConfigError

JAVA_MIN = 17
_INSTALL_HINT = (
    "install Java 17+ (`make install` does it with Debian's default-jre-headless; by hand: "
    "`sudo apt-get install -y default-jre-headless`) or point JAVA_HOME at a JDK/JRE 17+"
)


def java_version(java: str) -> int | None:
    """The major version of the ``java`` binary at ``java`` (None if it does not run)."""
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (out.stderr + out.stdout).splitlines():
        if "version" in line and '"' in line:
            ver = line.split('"')[1]
            head = ver.split(".")[0]
            if head == "1":  # 1.8.0_x is Java 8
                head = ver.split(".")[1]
            return int(head) if head.isdigit() else None
    return None


def check_java() -> str:
    """The java binary Spark will start, checked to be Java 17+; a clear error otherwise."""
    home = spark_settings().java_home
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    where = f"JAVA_HOME={home}" if home else "PATH"
    if not java or not os.path.exists(java):
        raise ConfigError(
            f"the Spark engine needs a JVM but no java was found on {where}: " + _INSTALL_HINT
        )
    ver = java_version(java)
    if ver is None or ver < JAVA_MIN:
        raise ConfigError(
            f"the Spark engine needs Java {JAVA_MIN}+ but {java} is "
            f"{'not runnable' if ver is None else f'Java {ver}'}: " + _INSTALL_HINT
        )
    return java


def get_spark(spark: Any = None) -> Any:
    """The active SparkSession, or a new one built from :func:`~mktlab.config.spark_settings`.

    Raises
    ------
    ConfigError
        pyspark is not installed, no Java 17+ is found, or the JVM does not start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "the Spark engine needs pyspark: pip install 'mktlab[scale]' (pyspark==4.3.0)"
        ) from exc
    if spark is not None:
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    s = spark_settings()
    use_spark_python()  # the workers must run this interpreter (numba, mlflow, mktlab)
    b = (
        SparkSession.builder.master(s.master)
        .appName("mktlab")
        .config("spark.driver.memory", s.driver_memory)
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        .config("spark.default.parallelism", str(s.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if s.executor_memory:
        b = b.config("spark.executor.memory", s.executor_memory)
    if s.local_dir:
        b = b.config("spark.local.dir", s.local_dir)
    try:
        session = b.getOrCreate()
    except Exception as exc:  # pyspark raises PySparkRuntimeError(JAVA_GATEWAY_EXITED) and kin
        raise ConfigError(
            f"Spark could not start (master {s.master!r}): {str(exc).splitlines()[0]}; "
            f"check MKTLAB_SPARK_MASTER and MKTLAB_SPARK_DRIVER_MEMORY, and {_INSTALL_HINT}"
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def spark_job(what: str) -> Iterator[None]:
    """Turn a failed Spark job into a :class:`ConfigError` that says what to set."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        text = str(exc)
        if "OutOfMemoryError" in text or "Java heap space" in text or "GC overhead" in text:
            raise ConfigError(
                f"{what}: the Spark job ran out of memory; raise MKTLAB_SPARK_DRIVER_MEMORY "
                f"(now {spark_settings().driver_memory}) and, on a cluster, "
                "MKTLAB_SPARK_EXECUTOR_MEMORY, or MKTLAB_SPARK_SHUFFLE_PARTITIONS for smaller tasks"
            ) from exc
        if type(exc).__module__.startswith(("py4j", "pyspark")):
            first = next((ln for ln in text.splitlines() if ln.strip()), type(exc).__name__)
            raise ConfigError(
                f"{what}: the Spark job failed: {first[:500]} (settings: MKTLAB_SPARK_MASTER, "
                "MKTLAB_SPARK_DRIVER_MEMORY, MKTLAB_SPARK_EXECUTOR_MEMORY)"
            ) from exc
        raise
