"""``resolve(..., engine="spark")``: the same identity rules on PySpark.

What runs where
---------------
On Spark (work that grows with the observations): validation, value normalisation, the
blocklist, the star link per record, deduplicated links with first / last seen and record
counts (merged with the previous map's links), hub degrees and the re-linking of records
anchored on a hub, connected components (large-star / small-star rounds,
:mod:`~mktlab.identity._spark_graph`) and the ordered replay of components that break a
cardinality limit (the local engine's numba union-find, per bucket of components).

On the driver (one row per identifier and per link: what an :class:`IdentityMap` holds
anyway): stable ids, audit, excluded and report, by the very functions the local engine
calls (:func:`mktlab.identity.resolver.assemble`), so a rule has one home.

Node order. The local engine numbers identifiers in order of first appearance (the
previous map's first); here each identifier's key is the row number of its first
observation (offset past the previous map's nodes), which sorts the same way. Ties
between anchors, the replay order and person numbering all follow from that order, so
both engines hand out the same ``global_id`` and ``uid``.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import DataError, require_columns
from mktlab.identity import resolver as _local
from mktlab.identity._encode import as_id_strings, blocked_mask, type_column
from mktlab.identity._spark_graph import connected_components, replay_conflicts
from mktlab.identity.map import IdentityMap
from mktlab.identity.merge_rules import IdentityRules
from mktlab.spark_session import get_spark, spark_job

_BIG = 64  # records above this size skip the duplicate check (as star_edges does)


def _strip(c):
    from pyspark.sql import functions as F

    return F.regexp_replace(c, r"(?U)^\s+|\s+$", "")


def _is_spark_frame(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyspark.sql") and hasattr(obj, "sparkSession")


# ------------------------------------------------------------------ input
def _input_frame(spark, observations):
    """Observations as a Spark frame ``_row, rec, ts (ns), id_type, id_value``."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if _is_spark_frame(observations):
        ts = F.col("ts").try_cast("timestamp")
        return observations.select(
            F.monotonically_increasing_id().alias("_row"),
            F.col("record_id").alias("rec"),
            (F.unix_micros(ts) * F.lit(1000)).alias("ts"),
            F.col("id_type").cast("string").alias("id_type"),
            F.col("id_value").cast("string").alias("id_value"),
        )
    obs = observations
    n = len(obs)

    def strings(s: pd.Series) -> np.ndarray:
        out = np.array(as_id_strings(s), dtype=object)
        out[s.isna().to_numpy()] = None
        return out

    rid = obs["record_id"]
    if pd.api.types.is_integer_dtype(rid.dtype):
        rec, rec_type = pd.array(rid, dtype="Int64"), T.LongType()
    else:
        rec, rec_type = strings(rid), T.StringType()
    ts = _local._parse_ts(obs["ts"])
    pdf = pd.DataFrame(
        {
            "_row": np.arange(n, dtype=np.int64),
            "rec": rec,
            "ts": pd.arrays.IntegerArray(ts, ts == np.iinfo(np.int64).min),
            "id_type": strings(obs["id_type"]),
            "id_value": strings(obs["id_value"]),
        }
    )
    schema = T.StructType(
        [
            T.StructField("_row", T.LongType(), False),
            T.StructField("rec", rec_type, True),
            T.StructField("ts", T.LongType(), True),
            T.StructField("id_type", T.StringType(), True),
            T.StructField("id_value", T.StringType(), True),
        ]
    )
    return spark.createDataFrame(pdf, schema=schema)


def _type_index(rules: IdentityRules):
    """Column expression: the rules' index of ``id_type`` (exact name, else case-blind)."""
    from pyspark.sql import functions as F

    names = rules.names
    c = F.col("id_type")
    expr = None
    for i, n in enumerate(names):
        expr = (F.when(c == n, i)) if expr is None else expr.when(c == n, i)
    folded = {n.strip().lower(): i for i, n in enumerate(names)}
    for k, i in folded.items():
        expr = expr.when(F.lower(_strip(c)) == k, i)
    return expr.otherwise(F.lit(None)).cast("int")


def _validate(spark, sdf, observations, rules: IdentityRules, errors: str):
    """Stage 1 on Spark: flag bad rows; raise or quarantine them as the local engine does."""
    from pyspark.sql import functions as F

    names = rules.names
    sdf = sdf.withColumn("t", _type_index(rules))
    checks = [
        ("record_id", "is null", F.col("rec").isNull()),
        ("id_type", "is null", F.col("id_type").isNull()),
        (
            "id_type",
            f"is not a known type {names}",
            F.col("id_type").isNotNull() & F.col("t").isNull(),
        ),
        ("id_value", "is null", F.col("id_value").isNull()),
        ("ts", "is null or does not parse as a timestamp", F.col("ts").isNull()),
    ]
    reason = None
    for col, what, mask in checks:
        reason = (
            F.when(mask, f"{col} {what}") if reason is None else reason.when(mask, f"{col} {what}")
        )
    sdf = sdf.withColumn("_bad", reason)
    flags = [mask.cast("int").alias(f"m{i}") for i, (_, _, mask) in enumerate(checks)]
    bad_rows = sdf.where(F.col("_bad").isNotNull()).select("_row", "_bad", *flags)
    bad = bad_rows.toPandas().sort_values("_row", kind="stable")
    if len(bad) == 0:
        empty = (
            observations.iloc[0:0]
            if isinstance(observations, pd.DataFrame)
            else pd.DataFrame(columns=["record_id", "id_type", "id_value", "ts"])
        )
        return sdf.drop("_bad"), empty.assign(reason=pd.Series(dtype="str")).reset_index(drop=True)
    if isinstance(observations, pd.DataFrame):
        orig = observations.iloc[bad["_row"].to_numpy()]
    else:
        orig = (
            sdf.where(F.col("_bad").isNotNull())
            .select("_row", F.col("rec").alias("record_id"), "id_type", "id_value", "ts")
            .toPandas()
            .sort_values("_row", kind="stable")
            .drop(columns="_row")
        )
    problems = []
    for i, (col, what, _) in enumerate(checks):
        m = bad[f"m{i}"].to_numpy(dtype=bool)
        if m.any():
            sample = orig.loc[orig.index[m]].head(3).to_dict("records")
            problems.append(f"observations.{col}: {int(m.sum()):,} row(s) {what}; e.g. {sample}")
    if errors == "raise":
        raise DataError(
            "bad observations (pass errors='quarantine' to set them aside):\n  "
            + "\n  ".join(problems)
        )
    quarantine = orig.copy()
    quarantine["reason"] = pd.Series(bad["_bad"].to_numpy(), index=quarantine.index, dtype="str")
    return sdf.where(F.col("_bad").isNull()).drop("_bad"), quarantine.reset_index(drop=True)


def _normalised(rules: IdentityRules):
    from pyspark.sql import functions as F

    v = F.col("id_value")
    expr = None
    for i, rule in enumerate(rules.ranked):
        val = (
            _strip(v)
            if rule.normalize == "strip"
            else (F.lower(_strip(v)) if rule.normalize == "lower" else v)
        )
        expr = F.when(F.col("t") == i, val) if expr is None else expr.when(F.col("t") == i, val)
    return expr


def _blocked(rules: IdentityRules):
    from pyspark.sql import functions as F

    vals = sorted({b.strip().lower() for b in rules.block_values})
    expr = F.lower(_strip(F.col("val"))).isin(vals) if vals else F.lit(False)
    for rx in rules.block_regex:
        expr = expr | F.col("val").rlike(rx)
    return expr


def _stars(rows):
    """The local engine's star per record: every identifier linked to the strongest one.

    ``rows``: ``_row, rec, key, t, ts``. Returns ``lo, hi, tlo, thi, first, last, cnt``
    (one row per record and linked identifier, before deduplication over records).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("rec")
    r = rows.withColumn("_a", F.min(F.struct("t", "key")).over(w)).withColumn(
        "_n", F.count(F.lit(1)).over(w)
    )
    r = r.where(F.col("key") != F.col("_a.key"))
    g = r.groupBy("rec", "key", "t", F.col("_a.key").alias("a"), F.col("_a.t").alias("ta")).agg(
        F.min_by("ts", "_row").alias("ts0"), F.min("ts").alias("tmin"), F.max("ts").alias("tmax"),
        F.count(F.lit(1)).alias("k"), F.first("_n").alias("n"),
    )  # fmt: skip
    big = F.col("n") > _BIG  # a huge record keeps repeated identifiers: dedupe counts them
    a_lo = F.col("a") < F.col("key")
    return g.select(
        F.least("a", "key").alias("lo"), F.greatest("a", "key").alias("hi"),
        F.when(a_lo, F.col("ta")).otherwise(F.col("t")).alias("tlo"),
        F.when(a_lo, F.col("t")).otherwise(F.col("ta")).alias("thi"),
        F.when(big, F.col("tmin")).otherwise(F.col("ts0")).alias("first"),
        F.when(big, F.col("tmax")).otherwise(F.col("ts0")).alias("last"),
        F.when(big, F.col("k")).otherwise(F.lit(1)).cast("long").alias("cnt"),
    )  # fmt: skip


def _dedupe(edges):
    from pyspark.sql import functions as F

    return edges.groupBy("lo", "hi", "tlo", "thi").agg(
        F.min("first").alias("first"), F.max("last").alias("last"), F.sum("cnt").alias("cnt")
    )


def _hub_thresholds(rules: IdentityRules) -> list[int | None]:
    return [rules.hub_limit(n) for n in rules.names]


def _hubs(spark, edges, rules: IdentityRules) -> pd.DataFrame:
    """Hub identifiers (key, degree): more links to one type at least as strong than allowed."""
    from pyspark.sql import functions as F

    thr = _hub_thresholds(rules)
    if all(t is None for t in thr):
        return pd.DataFrame({"key": np.zeros(0, np.int64), "degree": np.zeros(0, np.int64)})
    both = edges.select(
        F.col("lo").alias("a"), F.col("tlo").alias("ta"), F.col("thi").alias("tb")
    ).unionByName(
        edges.select(F.col("hi").alias("a"), F.col("thi").alias("ta"), F.col("tlo").alias("tb"))
    )
    deg = (
        both.where(F.col("tb") <= F.col("ta"))
        .groupBy("a", "ta", "tb")
        .count()
        .groupBy("a", "ta")
        .agg(F.max("count").alias("degree"))
    )
    limit = None
    for i, t in enumerate(thr):
        if t is not None:
            limit = (
                F.when(F.col("ta") == i, t) if limit is None else limit.when(F.col("ta") == i, t)
            )
    hub = deg.where(F.col("degree") > limit).select(F.col("a").alias("key"), "degree").toPandas()
    return hub.astype({"key": "int64", "degree": "int64"})


# ---------------------------------------------------------------- resolve
def resolve_spark(
    observations: Any,
    rules: IdentityRules | None = None,
    previous: IdentityMap | None = None,
    errors: str = "raise",
    *,
    spark: Any = None,
    stats: dict | None = None,
) -> IdentityMap:
    """:func:`mktlab.identity.resolve` on Spark (see the module docstring for what runs where).

    Parameters
    ----------
    observations : pandas or pyspark DataFrame
        ``record_id, ts, id_type, id_value`` as for the local engine.
    rules, previous, errors
        As for :func:`mktlab.identity.resolve`.
    spark : SparkSession, optional
        Defaults to the active session, else one built from ``MKTLAB_SPARK_*``.
    stats : dict, optional
        Filled with Spark-side figures: ``cc_rounds`` (one dict per large-star /
        small-star round), ``conflict_components``, ``stage_seconds``.
    """
    if _is_spark_frame(observations):
        require_columns(observations, _local.REQUIRED, table="observations")
        rules = _local._check_args(
            pd.DataFrame(columns=list(_local.REQUIRED)), rules, previous, errors
        )
    else:
        rules = _local._check_args(observations, rules, previous, errors)
    spark = get_spark(spark if spark is not None else (
        observations.sparkSession if _is_spark_frame(observations) else None
    ))  # fmt: skip
    with spark_job("resolve(engine='spark')"):
        return _run(spark, observations, rules, previous, errors, stats)


def _run(spark, observations, rules, previous, errors, stats) -> IdentityMap:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    secs: dict[str, float] = {}
    clock = perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now_ = perf_counter()
        secs[name] = round(now_ - clock, 3)
        clock = now_

    names, n_types = rules.names, len(rules.names)
    limits = np.array([t.max_per_person for t in rules.ranked], dtype=np.int64)
    cached: list = []

    def keep(df):
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(df)
        return df

    try:
        sdf = _input_frame(spark, observations)
        n_observations = len(observations) if isinstance(observations, pd.DataFrame) else None
        good, quarantine = _validate(spark, sdf, observations, rules, errors)
        if n_observations is None:
            n_observations = int(sdf.count())
        lap("validate")
        # 2. normalise, block, number the identifiers by first appearance
        rows = keep(good.withColumn("val", _normalised(rules)).withColumn("_blk", _blocked(rules)))
        agg = rows.agg(F.max("ts").alias("ts_max"), F.count(F.lit(1)).alias("n")).first()
        ts_max = agg["ts_max"]
        blk = (
            rows.where("_blk")
            .groupBy("t", "val")
            .agg(F.min("_row").alias("first"), F.count(F.lit(1)).alias("n_observations"))
            .toPandas()
            .sort_values("first", kind="stable")
        )
        blocked = {
            names[t]: int(c) for t, c in enumerate(
                np.bincount(blk["t"].to_numpy(np.int64), weights=blk["n_observations"].to_numpy(),
                            minlength=n_types).astype(np.int64)
            ) if c
        }  # fmt: skip
        excluded_blocked = pd.DataFrame(
            {
                "id_type": type_column(blk["t"].to_numpy(np.int64), names),
                "id_value": pd.Series(blk["val"].to_numpy(dtype=object), dtype="str"),
                "reason": _local._str_col(["blocked"] * len(blk)),
                "n_observations": blk["n_observations"].to_numpy(dtype=np.int64),
            }
        )
        live = rows.where(~F.col("_blk")).select("_row", "rec", "ts", "t", "val")
        node_tab = live.groupBy("t", "val").agg(
            F.min("_row").alias("first"), F.count(F.lit(1)).alias("n_obs")
        )
        prev = _previous_nodes(previous, rules)
        n_prev = 0 if prev is None else len(prev["t"])
        if prev is not None:
            pdf = spark.createDataFrame(
                pd.DataFrame({"t": prev["t"].astype(np.int32), "val": prev["val"],
                              "pkey": np.arange(n_prev, dtype=np.int64)}),
                schema="t int, val string, pkey long",
            )  # fmt: skip
            node_tab = node_tab.join(pdf, ["t", "val"], "full")
            key = F.coalesce(F.col("pkey"), F.col("first") + F.lit(n_prev))
        else:
            key = F.col("first")
        nodes = keep(
            node_tab.select("t", "val", key.alias("key"),
                            F.coalesce(F.col("n_obs"), F.lit(0)).alias("n_obs"))
        )  # fmt: skip
        linked = keep(live.join(nodes.select("t", "val", "key"), ["t", "val"]).drop("val"))
        lap("encode")
        # 3. links: a star per record, plus the previous map's links
        parts = _stars(linked)
        if prev is not None and len(prev["edges"]):
            parts = parts.unionByName(spark.createDataFrame(
                prev["edges"], schema="lo long, hi long, tlo int, thi int, first long, last long, cnt long"
            ))  # fmt: skip
        edges = keep(_dedupe(parts))
        n_records = int(linked.select("rec").distinct().count())
        lap("links")
        # 4. hubs, and records anchored on one re-linked around it
        hub = _hubs(spark, edges, rules)
        if len(hub):
            hubs_df = F.broadcast(spark.createDataFrame(hub[["key"]], schema="key long"))
            anchors = linked.groupBy("rec").agg(F.min(F.struct("t", "key")).alias("_a"))
            hit = anchors.join(hubs_df, anchors["_a.key"] == hubs_df["key"]).select("rec")
            around = linked.join(hit, "rec").join(hubs_df, "key", "left_anti")
            edges = keep(_dedupe(edges.unionByName(_stars(around))))
            hub_keys = hubs_df.withColumnRenamed("key", "hk")
            is_hub = F.col("h1.hk").isNotNull() | F.col("h2.hk").isNotNull()
            edges = keep(
                edges.join(hub_keys.alias("h1"), F.col("lo") == F.col("h1.hk"), "left")
                .join(hub_keys.alias("h2"), F.col("hi") == F.col("h2.hk"), "left")
                .select("lo", "hi", "tlo", "thi", "first", "last", "cnt", is_hub.alias("hub"))
            )
        else:
            edges = edges.withColumn("hub", F.lit(False))
        lap("hubs")
        # 5. components, then the ordered replay of those that break a limit
        rounds: list[dict] = []
        links = edges.where(~F.col("hub"))
        comp = connected_components(links.select(F.col("lo").alias("u"), F.col("hi").alias("v")),
                                    stats=rounds)  # fmt: skip
        hub_set = set(hub["key"].tolist())
        node_lab = keep(
            nodes.join(comp.withColumnRenamed("node", "key"), "key", "left").withColumn(
                "label", F.coalesce("label", "key")
            )
        )
        usable = node_lab.where(~F.col("key").isin(list(hub_set))) if hub_set else node_lab
        lim = None
        for i, x in enumerate(limits.tolist()):
            lim = F.when(F.col("t") == i, x) if lim is None else lim.when(F.col("t") == i, x)
        bad_labels = (
            usable.groupBy("label", "t").count().where(F.col("count") > lim)
            .select("label").distinct()
        )  # fmt: skip
        bad_nodes = usable.join(bad_labels, "label").select("key", "t", "label")
        bad_edges = (
            links.join(node_lab.select(F.col("key").alias("lo"), "label"), "lo")
            .join(bad_labels, "label")
            .select("lo", "hi", "cnt", "last", "label")
        )
        replayed = replay_conflicts(
            bad_edges, bad_nodes, limits, rules.order,
            max(1, spark.sparkContext.defaultParallelism * 2),
        ).toPandas()  # fmt: skip
        n_bad = int(replayed.loc[replayed["kind"] == 1, "r"].nunique())
        node_pd = node_lab.select("key", "t", "val", "n_obs", "label").toPandas()
        edge_pd = edges.select("lo", "hi", "first", "last", "cnt", "hub").toPandas()
        lap("components")
        if stats is not None:
            stats.update(cc_rounds=rounds, conflict_components=n_bad, stage_seconds=dict(secs))
        return _to_map(
            rules, previous, prev, node_pd, hub, edge_pd, replayed, ts_max,
            n_observations, quarantine, blocked, excluded_blocked, n_records, limits, lap, secs,
        )  # fmt: skip
    finally:
        for df in cached:
            df.unpersist()


def _previous_nodes(previous: IdentityMap | None, rules: IdentityRules) -> dict | None:
    """The previous map's usable identifiers (known type, not blocked) and links, as keys."""
    if previous is None or not len(previous.nodes):
        return None
    names = rules.names
    pn = previous.nodes
    ptype = pd.Series(pn["id_type"]).map({n: i for i, n in enumerate(names)})
    ptype = ptype.fillna(-1).to_numpy(dtype=np.int64)
    ok = ptype >= 0
    ok[ok] = ~blocked_mask(pn["id_value"][ok].reset_index(drop=True), rules)
    p_idx = np.flatnonzero(ok)
    key_of = np.full(len(pn), -1, dtype=np.int64)
    key_of[p_idx] = np.arange(len(p_idx))
    uid = pn["uid"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)[p_idx]
    edges = pd.DataFrame(columns=["lo", "hi", "tlo", "thi", "first", "last", "cnt"])
    if len(previous.edges):
        pe = previous.edges
        u = key_of[pe["u"].to_numpy(dtype=np.int64)]
        v = key_of[pe["v"].to_numpy(dtype=np.int64)]
        m = (u >= 0) & (v >= 0)
        lo, hi = np.minimum(u[m], v[m]), np.maximum(u[m], v[m])
        tk = ptype[p_idx]
        edges = pd.DataFrame({
            "lo": lo, "hi": hi, "tlo": tk[lo].astype(np.int32), "thi": tk[hi].astype(np.int32),
            "first": pe["first_ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)[m],
            "last": pe["last_ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)[m],
            "cnt": pe["n_records"].to_numpy(dtype=np.int64)[m],
        })  # fmt: skip
    return {
        "t": ptype[p_idx],
        "val": pn["id_value"].iloc[p_idx].to_numpy(dtype=object),
        "uid": uid,
        "edges": edges,
        "next_uid": previous.next_uid,
        "alive": set(np.unique(previous.mapping["uid"].to_numpy()).tolist()),
    }


def _to_map(
    rules, previous, prev, node_pd, hub, edge_pd, replayed, ts_max, n_observations,
    quarantine, blocked, excluded_blocked, n_records, limits, lap, secs,
) -> IdentityMap:  # fmt: skip
    """Dense node codes in key order, then the local engine's stage 6 and map assembly."""
    allnodes = node_pd.sort_values("key", kind="stable")
    keys = allnodes["key"].to_numpy(dtype=np.int64)
    n = len(keys)
    node_type = allnodes["t"].to_numpy(dtype=np.int64)
    is_hub = np.isin(keys, hub["key"].to_numpy(dtype=np.int64))
    label_key = allnodes["label"].to_numpy(dtype=np.int64, copy=True)
    if len(replayed):
        nd = replayed[replayed["kind"] == 1]
        root = pd.Series(nd["b"].to_numpy(np.int64), index=nd["a"].to_numpy(np.int64))
        pos = np.searchsorted(keys, root.index.to_numpy())
        label_key[pos] = root.to_numpy()
    label_key[is_hub] = keys[0] if n else 0
    labels = np.searchsorted(keys, label_key).astype(np.int64)
    labels[is_hub] = 0
    degree = np.zeros(n, dtype=np.int64)
    if len(hub):
        degree[np.searchsorted(keys, hub["key"].to_numpy(np.int64))] = hub["degree"].to_numpy()
    edge_pd = edge_pd.sort_values(["lo", "hi"], kind="stable")
    u = np.searchsorted(keys, edge_pd["lo"].to_numpy(np.int64))
    v = np.searchsorted(keys, edge_pd["hi"].to_numpy(np.int64))
    hub_edge = edge_pd["hub"].to_numpy(dtype=bool)
    link = np.flatnonzero(~hub_edge)
    reason = np.full(len(link), -1, dtype=np.int16)
    if len(replayed):
        ed = replayed[replayed["kind"] == 0]
        code = pd.Series(ed["r"].to_numpy(np.int64),
                         index=pd.MultiIndex.from_arrays([ed["a"].to_numpy(np.int64), ed["b"].to_numpy(np.int64)]))  # fmt: skip
        idx = pd.MultiIndex.from_arrays([edge_pd["lo"].to_numpy(np.int64)[link], edge_pd["hi"].to_numpy(np.int64)[link]])  # fmt: skip
        got = code.reindex(idx).to_numpy()
        has = ~np.isnan(got)
        reason[has] = got[has].astype(np.int16)
    prev_uid = np.full(n, -1, dtype=np.int64)
    if prev is not None:
        prev_uid[: len(prev["uid"])] = prev["uid"]  # previous nodes hold the smallest keys
    z = np.zeros(0, dtype=np.int64)  # row-level arrays only the local stages read
    nodes = _local._Nodes(
        row_local=z, blocked_rows=z, blocked=blocked, excluded_blocked=excluded_blocked,
        node_type=node_type, node_value=pd.Series(allnodes["val"].to_numpy(dtype=object), dtype="str"),
        local_to_node=z, prev_to_node=None, prev_uid=prev_uid,
        prev_next_uid=prev["next_uid"] if prev is not None else 0,
        prev_alive=prev["alive"] if prev is not None else set(),
    )  # fmt: skip
    links = _local._Links(
        u=u.astype(np.int64), v=v.astype(np.int64),
        first=edge_pd["first"].to_numpy(np.int64), last=edge_pd["last"].to_numpy(np.int64),
        count=edge_pd["cnt"].to_numpy(np.int64), r_rec=z, r_node=z, r_ts=z, r_rank=z,
        anchor=z, order=z, n_records=n_records,
    )  # fmt: skip
    ts = np.array([ts_max], dtype=np.int64) if ts_max is not None else z
    n_obs_node = allnodes["n_obs"].to_numpy(dtype=np.int64)
    return _local.assemble(
        rules, previous, nodes, links, labels, reason, link, is_hub, degree, hub_edge,
        n_obs_node, ts, n_observations, quarantine, lap, secs,
    )  # fmt: skip
