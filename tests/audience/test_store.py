"""AudienceStore on a hand-checkable table: every operator, windows, errors, saved audiences.

Users (uid: city, age, spend, vip, tier, signup month 2024):
1: SH 25 10.5 T bronze Jan | 2: BJ 31 200 F silver Feb | 3: SH - 55.25 F gold Mar
5: GZ 40 NaN T silver Apr | 8: - 18 0 F bronze May | 13: BJ 65 999.99 - gold Jun
21: SH 34 500 T gold Jul | 34: CD 25 55.25 F bronze Aug | 99: events only.
"""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest
from pyroaring import BitMap

from mktlab.audience import (
    Audience,
    AudienceCatalog,
    AudienceStore,
    AudienceSyntaxError,
    AudienceTypeError,
    UnknownNameError,
    overlap,
    overlap_matrix,
    upset_counts,
)
from mktlab.errors import DataError, MktlabError, NotFoundError, SchemaError, ValidationError

from .conftest import events_frame, profiles_frame

UNIVERSE = {1, 2, 3, 5, 8, 13, 21, 34, 99}

CASES = {
    # categorical
    'city == "SH"': {1, 3, 21},
    'city = "SH"': {1, 3, 21},
    'city != "SH"': {2, 5, 13, 34},
    '~(city == "SH")': {2, 5, 8, 13, 34, 99},
    'city in ("SH", "BJ")': {1, 2, 3, 13, 21},
    'city in ("SH", "SH")': {1, 3, 21},
    'city not in ("SH", "BJ")': {5, 34},
    # integer with nulls
    "age >= 31": {2, 5, 13, 21},
    "age > 31": {5, 13, 21},
    "age < 25": {8},
    "age <= 25": {1, 8, 34},
    "age == 25": {1, 34},
    "age != 25": {2, 5, 8, 13, 21},
    "age between 25 and 34": {1, 2, 21, 34},
    "age between 34 and 25": set(),
    "age >= 30.5": {2, 5, 13, 21},
    "age == 25.5": set(),
    "age != 25.5": {1, 2, 5, 8, 13, 21, 34},
    "age >= -1000": {1, 2, 5, 8, 13, 21, 34},
    "age > 1000": set(),
    "age in (18, 65, 99)": {8, 13},
    "age not in (25)": {2, 5, 8, 13, 21},
    # float with NaN
    "spend >= 55.25": {2, 3, 13, 21, 34},
    "spend > 55.25": {2, 13, 21},
    "spend < 0.01": {8},
    "spend between 10 and 60": {1, 3, 34},
    "spend == 55.25": {3, 34},
    "spend != 55.25": {1, 2, 8, 13, 21},
    "spend <= 10.5": {1, 8},
    # boolean with a null
    "vip": {1, 5, 21},
    "vip == true": {1, 5, 21},
    "vip == false": {2, 3, 8, 34},
    "vip != true": {2, 3, 8, 34},
    "vip in (true, false)": {1, 2, 3, 5, 8, 21, 34},
    "~vip": {2, 3, 8, 13, 34, 99},
    # ordered categorical
    'tier >= "silver"': {2, 3, 5, 13, 21},
    'tier > "silver"': {3, 13, 21},
    'tier < "gold"': {1, 2, 5, 8, 34},
    'tier <= "bronze"': {1, 8, 34},
    'tier between "silver" and "gold"': {2, 3, 5, 13, 21},
    'tier == "gold"': {3, 13, 21},
    # date
    'signup >= "2024-06-01"': {13, 21, 34},
    'signup between "2024-02-01" and "2024-03-31"': {2, 3},
    'signup == "2024-01-01"': {1},
    # structure
    'vip & city == "SH"': {1, 21},
    'vip | city == "GZ"': {1, 5, 21},
    'vip ^ city == "SH"': {3, 5},
    "vip & ~(age >= 30)": {1},
    '~vip & ~(city == "SH")': {2, 8, 13, 34, 99},
    "~~vip": {1, 5, 21},
    '(vip | tier == "gold") & (age < 30 | spend > 900)': {1, 13},
    'vip and not city == "SH" or age == 18': {5, 8},
    # windows (as_of = 2026-06-30, data 06-01 .. 06-30)
    "active_7d": {1, 2, 5, 99},
    "active_1d": {1},
    "active_30d": {1, 2, 3, 5, 99},
    "purchased_30d": {1, 3, 99},
    "order_30d": {1, 3, 99},
    "cart_7d": {5},
    "carted_7d": {5},
    "did(view, 1d)": {1},
    "did(any, 7d)": {1, 2, 5, 99},
    'did("order", 2d)': {1},
    'did("order", 3d)': {1, 99},
    "count(order, 30d) >= 2": {1, 3},
    "count(order, 30d) >= 3": {3},
    "count(order, 16d) >= 2": {1, 3},
    "count(order, 15d) >= 2": {1},
    "count(order, 30d) < 1": {2, 5, 8, 13, 21, 34},
    "count(order, 30d) == 1": {99},
    "count(order, 30d) != 1": {1, 2, 3, 5, 8, 13, 21, 34},
    "count(order, 30d) between 0 and 1": {2, 5, 8, 13, 21, 34, 99},
    "count(any, 30d) > 2": {1, 3},
    "active_7d & ~purchased_30d": {2, 5},
}


@pytest.mark.parametrize("expr", list(CASES))
def test_expression(store, expr):
    assert set(store.evaluate(expr)) == CASES[expr]
    assert store.size(expr) == len(CASES[expr])


def test_universe_and_description(store):
    assert set(store.universe) == UNIVERSE
    assert len(store) == 9
    desc = store.describe().set_index("tag")
    assert desc.loc["city", "kind"] == "categorical"
    assert desc.loc["city", "users"] == 7
    assert desc.loc["age", "kind"] == "numeric"
    assert desc.loc["vip", "users"] == 7
    assert desc.loc["tier", "detail"].startswith("ordered categorical")
    assert store.values("tier") == ["bronze", "silver", "gold"]
    assert store.values("city") == ["BJ", "CD", "GZ", "SH"]
    assert store.as_of.isoformat() == "2026-06-30"
    assert [d.isoformat() for d in store.data_range] == ["2026-06-01", "2026-06-30"]
    assert store.nbytes() > 0


def test_results_are_fresh_bitmaps(store):
    a = store.evaluate("vip")
    a.add(2)
    assert set(store.evaluate("vip")) == {1, 5, 21}
    u = store.evaluate("active_7d | ~active_7d")
    u.clear()
    assert set(store.universe) == UNIVERSE


def _err(store, expr, exc_type):
    with pytest.raises(exc_type) as info:
        store.evaluate(expr)
    return str(info.value).splitlines()


@pytest.mark.parametrize(
    ("expr", "exc_type", "message", "caret"),
    [
        ("city >= 3", AudienceTypeError, "type mismatch: 'city' is categorical", "          ^"),
        ('cty == "SH"', UnknownNameError, "unknown tag 'cty'; did you mean 'city'?", "  ^^^"),
        (
            'vip & city == "Sh"',
            UnknownNameError,
            "unknown value 'Sh' for 'city'; did you mean 'SH'?",
            "                ^^^^",
        ),
        ("age", AudienceTypeError, "'age' is int", "  ^^^"),
        ('city >= "SH"', AudienceTypeError, "unordered categorical", "  ^^^^^^^^^^^^"),
        ('age >= "x"', AudienceTypeError, "type mismatch: 'age'", "         ^^^"),
        ("signup >= 5", AudienceTypeError, "compare it with a quoted date", "            ^"),
        (
            'signup >= "2024-13-01"',
            AudienceTypeError,
            "cannot read '2024-13-01'",
            "            ^^^^^^^^^^^^",
        ),
        ("vip >= true", AudienceTypeError, "only == and != apply", "  ^^^^^^^^^^^"),
        ("vip == 1", AudienceTypeError, "compare it with true or false", "         ^"),
        ('count(order, 30d) >= "2"', AudienceTypeError, "count(...) is a number", "  " + "^" * 24),
        (
            "did(ordr, 7d)",
            UnknownNameError,
            "unknown event 'ordr'; did you mean 'order'?",
            "  ^^^^^^^^^^^^^",
        ),
        (
            "vip & active_31d",
            AudienceTypeError,
            "window 31d ending 2026-06-30 starts 2026-05-31",
            "        ^^^^^^^^^^",
        ),
        ("actve_7d", UnknownNameError, "did you mean 'active_7d'?", "  ^^^^^^^^"),
        (
            'tier between "silver" and "platinum"',
            UnknownNameError,
            "unknown value 'platinum'",
            None,
        ),
        ("spend between 1 and true", AudienceTypeError, "cannot compare it with True", None),
        ("city between 1 and 2", AudienceTypeError, "type mismatch", None),
        (
            'city between "BJ" and "SH"',
            AudienceTypeError,
            "'between' needs a numeric or ordered tag",
            None,
        ),
    ],
)
def test_semantic_errors_point_at_the_token(store, expr, exc_type, message, caret):
    lines = _err(store, expr, exc_type)
    assert message in lines[0]
    assert lines[1] == f"  {expr}"
    if caret is not None:
        assert lines[2] == caret


def test_errors_are_mktlab_errors(store):
    for expr, kind in [
        ("a &", ValidationError),
        ("nope", NotFoundError),
        ("city >= 1", ValidationError),
    ]:
        with pytest.raises(MktlabError):
            store.evaluate(expr)
        with pytest.raises(kind):
            store.evaluate(expr)
    with pytest.raises(AudienceSyntaxError):
        store.size("(vip")


# ----------------------------------------------------------------------- windows
def test_as_of_moves_every_window(catalog):
    s = AudienceStore.build(profiles_frame(), events_frame(), as_of="2026-06-25", catalog=catalog)
    assert set(s.evaluate("active_2d")) == {2, 5}
    assert set(s.evaluate("count(order, 25d) >= 3")) == {3}
    with pytest.raises(AudienceTypeError, match="longest window is 25d"):
        s.evaluate("active_26d")


@pytest.mark.parametrize("as_of", ["2026-07-01", "2026-05-31", "not a date"])
def test_as_of_outside_data_is_refused(catalog, as_of):
    with pytest.raises(ValidationError):
        AudienceStore.build(profiles_frame(), events_frame(), as_of=as_of, catalog=catalog)


def test_data_range_declares_quiet_days(catalog):
    s = AudienceStore.build(
        profiles_frame(), events_frame(), data_range=("2026-05-01", "2026-07-05"), catalog=catalog
    )
    assert s.as_of.isoformat() == "2026-07-05"
    assert s.size("active_5d") == 0  # no events in the last five (quiet) days
    assert set(s.evaluate("active_12d")) == {1, 2, 5, 99}
    assert set(s.evaluate("active_9d")) == {1, 99}
    with pytest.raises(ValidationError, match="outside data_range"):
        AudienceStore.build(
            profiles_frame(), events_frame(), data_range=("2026-06-10", "2026-06-30")
        )


def test_events_only_and_profiles_only_stores(catalog):
    ev = AudienceStore.build(events=events_frame(), catalog=catalog)
    assert set(ev.universe) == {1, 2, 3, 5, 99}
    assert set(ev.evaluate("~purchased_30d")) == {2, 5}
    prof = AudienceStore.build(profiles_frame(), catalog=catalog)
    with pytest.raises(UnknownNameError, match="unknown tag 'active_7d'"):
        prof.evaluate("active_7d")
    with pytest.raises(UnknownNameError, match="no event table"):
        prof.evaluate("did(order, 7d)")
    with pytest.raises(ValidationError, match="no event table"):
        AudienceStore.build(profiles_frame(), as_of="2026-06-01")


def test_profile_column_named_like_a_window_wins(catalog):
    p = profiles_frame().assign(active_7d=[True, False, False, False, False, False, False, True])
    s = AudienceStore.build(p, events_frame(), catalog=catalog)
    assert set(s.evaluate("active_7d")) == {1, 34}


def test_custom_event_aliases(catalog):
    s = AudienceStore.build(
        profiles_frame(), events_frame(), event_aliases={"buyer": "order"}, catalog=catalog
    )
    assert set(s.evaluate("buyer_30d")) == {1, 3, 99}
    with pytest.raises(UnknownNameError):
        s.evaluate("active_7d")


# ----------------------------------------------------------------------- bad input
def test_uid_validation(catalog):
    p = profiles_frame()
    for bad, err, msg in [
        (p.assign(uid=p.uid.astype(np.int64) - 2), ValidationError, "32 bits"),
        (p.assign(uid=p.uid.astype(np.int64) + 2**32), ValidationError, "32 bits"),
        (p.assign(uid=p.uid.astype(float)), SchemaError, "unsigned 32-bit integer"),
        (
            p.assign(uid=pd.array([1, 2, None, 5, 8, 13, 21, 34], dtype="UInt32")),
            SchemaError,
            "null",
        ),
        (
            p.assign(uid=np.array([1, 2, 3, 5, 8, 13, 21, 1], dtype=np.uint32)),
            DataError,
            "duplicate",
        ),
        (p.drop(columns="uid"), SchemaError, "missing column 'uid'"),
    ]:
        with pytest.raises(err, match=msg):
            AudienceStore.build(bad, catalog=catalog)
    with pytest.raises(SchemaError, match="missing column 'event'"):
        AudienceStore.build(events=events_frame().drop(columns="event"), catalog=catalog)
    with pytest.raises(SchemaError, match="'ts' must be a timestamp"):
        AudienceStore.build(events=events_frame().assign(ts="x"), catalog=catalog)


def test_build_options(catalog):
    p = profiles_frame()
    s = AudienceStore.build(p, kinds={"age": "categorical"}, exclude=["spend"], catalog=catalog)
    assert "spend" not in s.tags
    assert set(s.evaluate('age == "25"')) == {1, 34}
    with pytest.raises(SchemaError, match="did you mean 'spend'"):
        AudienceStore.build(p, exclude=["spnd"], catalog=catalog)
    with pytest.raises(ValidationError, match="expected one of"):
        AudienceStore.build(p, kinds={"age": "text"}, catalog=catalog)
    with pytest.raises(DataError, match="distinct values"):
        AudienceStore.build(p, max_values=3, catalog=catalog)
    with pytest.raises(ValidationError, match="engine"):
        AudienceStore.build(p, engine="gpu")
    with pytest.raises(ValidationError, match="give a profile table"):
        AudienceStore.build()
    sparse = p.assign(uid=p.uid.astype(np.uint64) * 100_000_000 % (2**32 - 1))
    with pytest.raises(ValidationError, match="engine='roaring'"):
        AudienceStore.build(sparse, engine="dense")
    weird = p.assign(**{"bad name": 1, "blob": [b"x"] * 8})
    s = AudienceStore.build(weird, catalog=catalog)
    assert set(s.skipped) == {"bad name", "blob"}


def test_unsorted_sparse_and_wide_uids(catalog):
    p = profiles_frame()
    order = [7, 3, 0, 5, 1, 6, 2, 4]
    shuffled = p.iloc[order].reset_index(drop=True)
    s = AudienceStore.build(shuffled, catalog=catalog)
    assert set(s.evaluate('city == "SH" & age >= 25')) == {1, 21}
    wide = p.assign(uid=p.uid.astype(np.uint64) * 400_000_000 % (2**32 - 1))
    s = AudienceStore.build(wide, catalog=catalog)
    expected = set(wide.uid[wide.city == "SH"].tolist())
    assert set(s.evaluate('city == "SH"')) == expected


def test_sources_parquet_arrow_and_duckdb(tmp_path, catalog):
    p = profiles_frame().drop(columns=["tier"])
    p.to_parquet(tmp_path / "p.parquet")
    events_frame().to_parquet(tmp_path / "e.parquet")
    s1 = AudienceStore.build(tmp_path / "p.parquet", str(tmp_path / "e.parquet"), catalog=catalog)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE prof AS SELECT * FROM '{tmp_path / 'p.parquet'}'")
    s2 = AudienceStore.build(
        "prof", con.sql(f"SELECT * FROM '{tmp_path / 'e.parquet'}'"), con=con, catalog=catalog
    )
    expr = 'age >= 25 & city in ("SH", "BJ") | purchased_30d'
    assert set(s1.evaluate(expr)) == set(s2.evaluate(expr)) == {1, 2, 3, 13, 21, 99}
    with pytest.raises(DataError, match="does not exist"):
        AudienceStore.build(tmp_path / "missing.parquet")
    with pytest.raises(ValidationError, match="expected a DataFrame"):
        AudienceStore.build(42)


# ----------------------------------------------------------------------- saved audiences
def test_save_reference_and_list(store):
    row = store.save("sh", 'city == "SH"', description="Shanghai")
    assert row.size == 3
    assert set(store.evaluate("@sh & vip")) == {1, 21}
    assert set(store.evaluate("~@sh")) == UNIVERSE - {1, 3, 21}
    store.save("sh_vip", "@sh & vip")
    listing = store.saved().set_index("name")
    assert listing.loc["sh", "definition"] == 'city == "SH"'
    assert listing.loc["sh", "size"] == 3
    assert listing.loc["sh_vip", "size"] == 2
    assert listing.loc["sh", "description"] == "Shanghai"
    assert listing.loc["sh", "build_seconds"] >= 0
    assert str(listing.loc["sh", "as_of"])[:10] == "2026-06-30"
    with pytest.raises(UnknownNameError, match="did you mean 'sh'") as info:
        store.evaluate("vip | @shh")
    assert str(info.value).splitlines()[2] == "        ^^^^"


def test_saved_reference_follows_definition_and_refresh(catalog):
    s1 = AudienceStore.build(profiles_frame(), events_frame(), catalog=catalog)
    s1.save("vips", "vip")
    p = profiles_frame()
    p.loc[p.uid == 2, "vip"] = True
    p.loc[p.uid == 1, "vip"] = False
    s2 = AudienceStore.build(p, events_frame(), catalog=catalog)
    # A reference evaluates the definition on the current store...
    assert set(s2.evaluate("@vips")) == {2, 5, 21}
    # ...while the saved snapshot stays until refresh.
    assert set(catalog.get("vips").bitmap) == {1, 5, 21}
    report = s2.refresh().set_index("name")
    assert report.loc["vips"].to_dict() == {"old_size": 3, "new_size": 3, "added": 1, "removed": 1}
    assert set(catalog.get("vips").bitmap) == {2, 5, 21}


def test_cycles_and_bad_names(store):
    store.save("a", "vip")
    store.save("b", '@a & city == "SH"')
    with pytest.raises(AudienceTypeError, match="cycle: @a -> @b -> @a"):
        store.save("a", "@b")
    with pytest.raises(AudienceTypeError, match="cycle"):
        store.save("c", "@c")
    assert store.catalog.get("a").definition == "vip"  # nothing half-written
    for bad in ["1abc", "a b", "", "x;drop"]:
        with pytest.raises(ValidationError, match="audience name"):
            store.save(bad, "vip")
    store.catalog.save("b", "vipp", BitMap())
    with pytest.raises(UnknownNameError, match="in @b"):
        store.evaluate("@b")


def test_persistence_round_trip(tmp_path, store):
    path = store.write(tmp_path / "store.duckdb")
    loaded = AudienceStore.read(path, catalog=store.catalog)
    assert set(loaded.universe) == set(store.universe)
    assert loaded.as_of == store.as_of
    for expr, expected in CASES.items():
        assert set(loaded.evaluate(expr)) == expected, expr
    assert not list(tmp_path.glob(".store.duckdb.*"))  # temp file renamed away
    with pytest.raises(DataError, match="does not exist"):
        AudienceStore.read(tmp_path / "nope.duckdb")
    (tmp_path / "junk.duckdb").write_bytes(b"not a database")
    with pytest.raises(DataError):
        AudienceStore.read(tmp_path / "junk.duckdb")


def test_catalog_blobs_are_clickhouse_states(store):
    store.save("small", "vip")
    big_profiles = pd.DataFrame(
        {"uid": np.arange(1000, dtype=np.uint32), "f": np.arange(1000) % 2 == 0}
    )
    big = AudienceStore.build(big_profiles, catalog=store.catalog)
    big.save("evens", "f")
    con = duckdb.connect(str(store.catalog.path), read_only=True)
    states = dict(con.execute("SELECT name, state FROM audiences").fetchall())
    con.close()
    assert states["small"] == bytes([0, 3, 1, 0, 0, 0, 5, 0, 0, 0, 21, 0, 0, 0])
    assert states["evens"][0] == 1
    assert BitMap.deserialize(states["evens"][3:]) == BitMap(range(0, 1000, 2))
    fresh = AudienceCatalog(store.catalog.path)
    assert set(fresh.get("evens").bitmap) == set(range(0, 1000, 2))
    fresh.delete("small")
    assert fresh.names() == ["evens"]
    with pytest.raises(UnknownNameError):
        fresh.delete("small")
    assert AudienceCatalog(store.catalog.path.parent / "empty.duckdb").names() == []


# ----------------------------------------------------------------------- results
class _Map:
    """A minimal identity map: anything with ``global_ids(uids)`` works."""

    def global_ids(self, uids):
        return np.array([f"g{u}" for u in uids], dtype=object)


def test_audience_result_sample_and_export(tmp_path, store):
    aud = store.query('vip | city == "BJ"')
    assert isinstance(aud, Audience)
    assert aud.size == len(aud) == 5
    assert 13 in aud
    assert 99 not in aud
    assert aud.uids().tolist() == [1, 2, 5, 13, 21]
    sample = aud.sample(3, seed=1, identity_map=_Map())
    assert len(sample) == 3
    assert set(sample.uid) <= {1, 2, 5, 13, 21}
    assert all(g == f"g{u}" for u, g in zip(sample.uid, sample.global_id))
    assert len(aud.sample(100)) == 5
    assert aud.sample(3, seed=4).equals(aud.sample(3, seed=4))
    out = aud.export(tmp_path / "a.parquet", identity_map=_Map())
    assert pd.read_parquet(out).global_id.tolist() == ["g1", "g2", "g5", "g13", "g21"]
    out = aud.export(tmp_path / "a.csv", hash_salt="pepper")
    hashed = pd.read_csv(out).hashed_id.tolist()
    assert hashed[0] == hashlib.sha256(b"pepper1").hexdigest()
    out = aud.export(tmp_path / "b.txt", format="csv", identity_map=_Map(), hash_salt="s")
    assert pd.read_csv(out).hashed_id.iloc[-1] == hashlib.sha256(b"sg21").hexdigest()
    with pytest.raises(ValidationError, match="parquet' or 'csv"):
        aud.export(tmp_path / "a.xlsx")
    with pytest.raises(ValidationError, match="hash_salt"):
        aud.to_frame(hash_salt="")
    empty = store.query("vip & ~vip")
    assert empty.size == 0
    assert len(empty.sample(3)) == 0
    assert len(empty.to_frame(identity_map=_Map())) == 0


def test_overlap_matrix_and_upset(store):
    store.save("vip", "vip")
    store.save("sh", 'city == "SH"')
    store.save("buyers", "purchased_30d")
    long = store.overlap(["vip", "sh", "buyers"]).set_index(["a", "b"])
    assert long.loc[("vip", "sh"), "intersection"] == 2
    assert long.loc[("vip", "sh"), "jaccard"] == pytest.approx(2 / 4)
    assert long.loc[("sh", "buyers"), "share_of_a"] == pytest.approx(2 / 3)
    sets = store.sets(["vip", "sh", "buyers"])
    mat = overlap_matrix(sets, "jaccard")
    assert list(mat.index) == ["vip", "sh", "buyers"]
    assert np.allclose(np.diag(mat.to_numpy(dtype=float)), 1.0)
    assert overlap_matrix(sets).loc["sh", "buyers"] == 2
    ups = upset_counts(sets)
    assert ups["size"].sum() == len(BitMap.union(*sets.values()))
    row = ups[ups.sets == ("vip", "sh", "buyers")]
    assert row["size"].item() == 1  # uid 1
    assert set(store.overlap({"x": "vip", "y": store.query("~vip")}).intersection) == {0, 3, 6}
    assert len(overlap({"x": BitMap([1])})) == 1
    with pytest.raises(ValidationError):
        overlap({})


def test_plots(store):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mktlab.audience import plot_overlap_heatmap, plot_upset

    sets = {
        "vip": store.evaluate("vip"),
        "sh": store.evaluate('city == "SH"'),
        "old": store.evaluate("age > 30"),
    }
    fig = plot_upset(sets)
    assert len(fig.axes) == 2
    fig2 = plot_overlap_heatmap(sets)
    assert fig2.axes
    plt.close("all")
