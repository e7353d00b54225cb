"""Property: every expression selects exactly the uids that the equivalent DuckDB SQL selects.

Hypothesis draws a random tag table (categorical, integer, float and boolean columns with
nulls, uids sparse or dense, possibly unsorted), a random event table, and a random AST
over them; the store's answer (both engines) must equal the result of the SQL that
:func:`mktlab.audience.to_sql` generates from the same AST over the columnar tables.
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
from mktlab.audience.lang import And, Between, Compare, CountCmp, Did, In, Not, Or, Tag, Xor, parse

OPS = ["==", "!=", ">=", ">", "<=", "<"]
EVENTS = ["view", "order", "cart"]
FIRST = dt.date(2026, 3, 1)
DAYS = 10


@st.composite
def tables(draw):
    n = draw(st.integers(1, 40))
    dense = draw(st.booleans())
    pool = range(0, 3 * n) if dense else range(0, 2**32 - 1, 7919 * 4099)
    uids = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n, unique=True))
    rows = st.integers(0, n - 1)

    def nullable(strategy):
        return st.lists(st.one_of(st.none(), strategy), min_size=n, max_size=n)

    profiles = pd.DataFrame(
        {
            "uid": np.array(uids, dtype=np.uint32),
            "cat": pd.array(
                draw(nullable(st.sampled_from(["a", "b", "c", "d e", "O'K"]))), dtype="str"
            ),
            "num": pd.array(draw(nullable(st.integers(-5, 12))), dtype="Int64"),
            "real": pd.array(
                draw(nullable(st.sampled_from([-1.5, 0.0, 0.25, 2.0, 3.75, 1e6]))), dtype="Float64"
            ),
            "flag": pd.array(draw(nullable(st.booleans())), dtype="boolean"),
        }
    )
    m = draw(st.integers(0, 30))
    extra = draw(st.lists(st.integers(0, 5 * n + 100), max_size=3))
    ev_uids = [uids[draw(rows)] for _ in range(m)] + extra
    events = pd.DataFrame(
        {
            "uid": np.array(ev_uids, dtype=np.uint32),
            "ts": [
                pd.Timestamp(FIRST)
                + pd.Timedelta(
                    days=draw(st.integers(0, DAYS - 1)), minutes=draw(st.integers(0, 1439))
                )
                for _ in ev_uids
            ],
            "event": [draw(st.sampled_from(EVENTS)) for _ in ev_uids],
        }
    )
    if len(events):
        # Pin the data range so every window 1..DAYS is legal whatever was drawn.
        events.loc[len(events)] = [np.uint32(uids[0]), pd.Timestamp(FIRST), "view"]
        events.loc[len(events)] = [
            np.uint32(uids[0]),
            pd.Timestamp(FIRST) + pd.Timedelta(days=DAYS - 1),
            "view",
        ]
        events["uid"] = events["uid"].astype(np.uint32)
    return profiles, (events if len(events) else None)


def expressions(profiles: pd.DataFrame, events: pd.DataFrame | None):
    cats = sorted(set(profiles["cat"].dropna()))
    num = st.integers(-7, 14)
    real = st.sampled_from([-1.5, -1.0, 0.0, 0.25, 0.3, 2.0, 3.75, 1e6, 5e6])
    leaves = [
        st.builds(Compare, st.just("num"), st.sampled_from(OPS), num),
        st.builds(Compare, st.just("num"), st.sampled_from(OPS), real),
        st.builds(Compare, st.just("real"), st.sampled_from(OPS), real),
        st.builds(Compare, st.just("real"), st.sampled_from(OPS), num),
        st.builds(Between, st.just("num"), num, num),
        st.builds(Between, st.just("real"), real, real),
        st.builds(
            In, st.just("num"), st.lists(num, min_size=1, max_size=3).map(tuple), st.booleans()
        ),
        st.just(Tag("flag")),
        st.builds(Compare, st.just("flag"), st.sampled_from(["==", "!="]), st.booleans()),
    ]
    if cats:
        value = st.sampled_from(cats)
        leaves += [
            st.builds(Compare, st.just("cat"), st.sampled_from(["==", "!="]), value),
            st.builds(
                In,
                st.just("cat"),
                st.lists(value, min_size=1, max_size=3).map(tuple),
                st.booleans(),
            ),
        ]
    if events is not None:
        # Only events present in the data: an unknown event is an error, not an empty set.
        names = [*sorted(set(events["event"])), "any"]
        days = st.integers(1, DAYS)
        leaves += [
            st.builds(Did, st.sampled_from(names), days),
            st.builds(
                CountCmp, st.sampled_from(names), days, st.sampled_from(OPS), st.integers(0, 3)
            ),
            days.map(lambda d: Tag(f"active_{d}d")),
        ]
        if "order" in names:
            leaves.append(days.map(lambda d: Tag(f"purchased_{d}d")))
    return st.recursive(
        st.one_of(*leaves),
        lambda kids: st.one_of(
            kids.map(Not),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: Xor(tuple(xs))),
        ),
        max_leaves=7,
    )


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_bitmaps_equal_duckdb_sql(con, tmp_path_factory, data):
    profiles, events = data.draw(tables())
    tree = data.draw(expressions(profiles, events))
    catalog = AudienceCatalog(tmp_path_factory.getbasetemp() / "equiv.duckdb")
    con.register("profiles", profiles)
    if events is not None:
        con.register("events", events)
    as_of = FIRST + dt.timedelta(days=DAYS - 1)
    sql = to_sql(
        tree,
        events="events" if events is not None else None,
        as_of=as_of if events is not None else None,
        profile_columns=set(profiles.columns),
    )
    expected = sorted(int(r[0]) for r in con.execute(sql).fetchall())
    # The dense engine keeps one bitset over 0..max(uid) per tag value: only for dense uids.
    engines = ("roaring", "dense") if int(profiles["uid"].max()) < 10_000 else ("roaring",)
    for engine in engines:
        store = AudienceStore.build(profiles, events, engine=engine, catalog=catalog)
        got = store.evaluate(tree)
        assert sorted(got) == expected, (engine, to_text(tree), sql)
        assert store.size(tree) == len(expected)
        # The text form gives the same answer as the tree.
        assert store.size(to_text(tree)) == len(expected)


def test_sql_for_saved_references_and_count_only(con):
    profiles = pd.DataFrame({"uid": np.array([1, 2, 3], dtype=np.uint32), "x": [1, 2, None]})
    con.register("p", profiles)
    sql = to_sql("@big | x == 1", profiles="p", definitions={"big": "x >= 2"}, count_only=True)
    assert con.execute(sql).fetchone()[0] == 2
    with pytest.raises(Exception, match="definitions"):
        to_sql("@big", profiles="p")
    with pytest.raises(Exception, match="windows need"):
        to_sql("did(order, 3d)")
    assert parse(to_text(parse("x >= 1 & ~(x < 0)"))) == parse("x >= 1 & ~(x < 0)")
