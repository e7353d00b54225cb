"""``resolve``: one entry point, two engines (local in process, or PySpark).

The engines live in :mod:`mktlab.identity.resolver` (local) and
:mod:`mktlab.identity.spark`; the Spark one reuses the local one's stages, so the choice
is made here, above both.
"""

from __future__ import annotations

import pandas as pd

from mktlab.errors import ValidationError
from mktlab.identity.map import IdentityMap
from mktlab.identity.merge_rules import IdentityRules
from mktlab.identity.resolver import resolve_local

ENGINES = ("local", "spark")


def resolve(
    observations: pd.DataFrame,
    rules: IdentityRules | None = None,
    previous: IdentityMap | None = None,
    errors: str = "raise",
    engine: str = "local",
) -> IdentityMap:
    """Resolve raw identifier observations into people.

    Parameters
    ----------
    observations : DataFrame
        Columns ``record_id, ts, id_type, id_value`` (``source`` optional). Identifiers
        sharing a ``record_id`` were seen together and are linked.
    rules : IdentityRules, optional
        Defaults to the previous map's rules, else :class:`IdentityRules` defaults.
    previous : IdentityMap, optional
        A map from an earlier run. ``observations`` are then *new* observations added to
        the previous links; every surviving person keeps its ``global_id`` and ``uid``.
    errors : {"raise", "quarantine"}
        What to do with bad rows (null ids, unknown types, unparseable timestamps).
    engine : {"local", "spark"}
        ``"local"`` (default): numpy, scipy and numba in this process. ``"spark"``: the
        same rules on PySpark (:mod:`mktlab.identity.spark`; ``observations`` may then
        also be a Spark DataFrame), settings from :func:`mktlab.config.spark_settings`.
        Both give the same map: same people, same ``global_id`` and ``uid``.

    Returns
    -------
    IdentityMap

    Raises
    ------
    SchemaError
        A required column is missing.
    DataError
        Bad rows and ``errors="raise"``; the message names each field with sample rows.
    ConfigError
        ``engine="spark"`` and Spark cannot start or run the job (no JVM, out of memory):
        the message says what to install or set.
    """
    if engine not in ENGINES:
        raise ValidationError(f"resolve: engine must be one of {ENGINES}, got {engine!r}")
    if engine == "spark":
        from mktlab.identity.spark import resolve_spark  # pyspark and a JVM only when asked

        return resolve_spark(observations, rules, previous, errors)
    return resolve_local(observations, rules, previous, errors)
