"""Property: the chdb engine selects exactly the users the local engine selects.

Hypothesis draws the random tag and event tables of the DuckDB equivalence test, adds an
ordered categorical, a date and a timestamp column, and draws several random ASTs per
table; the store built with ``engine="chdb"`` (bitmaps as ClickHouse ``groupBitmap``
states, expressions compiled to ClickHouse SQL) must give the same members and the same
size as the local roaring engine, and DuckDB SQL over the same tables must agree.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktlab.audience import AudienceCatalog, AudienceStore, to_sql, to_text
from mktlab.audience.lang import Between, Compare, In, Not, Or

from .test_sql_equivalence import DAYS, FIRST, OPS, expressions, tables

pytest.importorskip("chdb", reason="the chdb engine needs the 'scale' extra (chdb)")

TIERS = ["low", "mid", "high", "top"]
DATES = [f"2024-0{m}-1{d}" for m in (1, 2, 3) for d in (0, 5)]


@st.composite
def wider_tables(draw):
    """The DuckDB test's tables plus an ordered categorical, a date and a timestamp."""
    profiles, events = draw(tables())
    n = len(profiles)

    def nullable(strategy):
        return draw(st.lists(st.one_of(st.none(), strategy), min_size=n, max_size=n))

    profiles["tier"] = pd.Categorical(
        nullable(st.sampled_from(TIERS[:3])), categories=TIERS, ordered=True
    )
    profiles["joined"] = pd.to_datetime(
        pd.Series(nullable(st.sampled_from(DATES)), dtype="object")
    ).dt.date
    profiles["seen"] = pd.to_datetime(
        pd.Series(
            [
                None if d is None else f"{d} {h % 24:02d}:30:00"
                for d, h in zip(nullable(st.sampled_from(DATES)), range(n))
            ],
            dtype="object",
        )
    )
    return profiles, events


def wider_expressions(profiles, events):
    base = expressions(profiles, events)
    tier = st.sampled_from(TIERS)
    date = st.sampled_from([*DATES, "2023-12-31", "2024-02-12"])
    extra = st.one_of(
        st.builds(Compare, st.just("tier"), st.sampled_from(OPS), tier),
        st.builds(Between, st.just("tier"), tier, tier),
        st.builds(In, st.just("tier"), st.lists(tier, min_size=1, max_size=2).map(tuple)),
        st.builds(Compare, st.just("joined"), st.sampled_from(OPS), date),
        st.builds(Between, st.just("joined"), date, date),
        st.builds(Compare, st.just("seen"), st.sampled_from(OPS), date.map(lambda d: d + "T12:00")),
    )
    return st.one_of(
        base,
        extra,
        st.tuples(base, extra).map(lambda t: Or((t[0], Not(t[1])))),
    )


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_chdb_engine_equals_local_engine(con, tmp_path_factory, data):
    profiles, events = data.draw(wider_tables())
    catalog = AudienceCatalog(tmp_path_factory.getbasetemp() / "ch-equiv.duckdb")
    local = AudienceStore.build(profiles, events, engine="roaring", catalog=catalog)
    chdb_store = AudienceStore.build(profiles, events, engine="chdb", catalog=catalog)
    con.register("profiles", profiles)
    if events is not None:
        con.register("events", events)
    try:
        assert chdb_store.engine == "chdb"
        assert sorted(chdb_store.universe) == sorted(local.universe)
        for _ in range(4):
            tree = data.draw(wider_expressions(profiles, events))
            want = local.evaluate(tree)
            got = chdb_store.evaluate(tree)
            assert sorted(got) == sorted(want), (to_text(tree), chdb_store.sql(tree))
            assert chdb_store.size(tree) == len(want)
            assert chdb_store.size(to_text(tree)) == len(want)
            # and DuckDB SQL over the same tables says the same (ENUM ranks via orders=)
            sql = to_sql(
                tree,
                events="events" if events is not None else None,
                as_of=FIRST + dt.timedelta(days=DAYS - 1) if events is not None else None,
                profile_columns=set(profiles.columns),
                orders={"tier": tuple(TIERS)},
            )
            assert sorted(int(r[0]) for r in con.execute(sql).fetchall()) == sorted(want), sql
    finally:
        chdb_store.close()


def test_saved_references_and_store_views(tmp_path):
    """``@name`` expands the same way; describe(), tags and values match the local store."""
    profiles = pd.DataFrame(
        {
            "uid": np.array([3, 1, 7, 9, 40_000_000], dtype=np.uint32),
            "city": ["SH", "BJ", None, "SH", "GZ"],
            "score": [1.5, np.nan, 2.5, 1.5, 9.0],
            "vip": pd.array([True, None, False, True, False], dtype="boolean"),
        }
    )
    catalog = AudienceCatalog(tmp_path / "c.duckdb")
    local = AudienceStore.build(profiles, catalog=catalog)
    ch = AudienceStore.build(profiles, engine="chdb", catalog=catalog)
    local.save("sh", 'city == "SH"')
    for expr in ["@sh & score >= 1.5", "~@sh", "@sh ^ vip", "score != 1.5", "~(score == 9)"]:
        assert sorted(ch.evaluate(expr)) == sorted(local.evaluate(expr)), expr
    assert ch.describe().equals(local.describe())
    assert ch.values("city") == local.values("city")
    assert len(ch) == len(local) == 5
    assert "bitmapAnd" in ch.sql('city == "SH" & vip')
    ch.close()
