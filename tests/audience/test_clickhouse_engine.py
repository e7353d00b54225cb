"""The ClickHouse engines: refusals, errors, settings, and the server path.

The server test runs only when a ClickHouse server answers at ``MKTLAB_CLICKHOUSE_URL``
(default ``http://default:@127.0.0.1:8123/default``); our machines run none, so it skips
saying so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.audience import AudienceCatalog, AudienceStore, UnknownNameError
from mktlab.audience.chconn import ServerRunner, runner_for
from mktlab.audience.clickhouse import InexpressibleError, count_predicate
from mktlab.audience.lang import AudienceTypeError
from mktlab.config import clickhouse_url
from mktlab.errors import ConfigError, DataError, ServiceUnavailableError

from .conftest import events_frame, profiles_frame

pytest.importorskip("chdb", reason="needs the 'scale' extra (chdb)")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    catalog = AudienceCatalog(tmp_path_factory.mktemp("ch") / "c.duckdb")
    local = AudienceStore.build(profiles_frame(), events_frame(), catalog=catalog)
    ch = AudienceStore.build(profiles_frame(), events_frame(), engine="chdb", catalog=catalog)
    yield local, ch
    ch.close()


@pytest.mark.parametrize(
    "expr",
    [
        'cty == "SH"',
        "city >= 3",
        "age",
        'tier == "gld"',
        "active_900d",
        "count(order, 40d) >= 1",
        "did(click, 3d)",
        "count(order, 3d) >= true",
        "@nothing_saved",
    ],
)
def test_errors_are_the_local_ones(stores, expr):
    local, ch = stores
    with pytest.raises((AudienceTypeError, UnknownNameError)) as want:
        local.size(expr)
    with pytest.raises(type(want.value)) as got:
        ch.size(expr)
    assert str(got.value) == str(want.value)


def test_windows_and_counts_match(stores):
    local, ch = stores
    for expr in [
        "count(order, 30d) between 1 and 2",
        "count(any, 30d) != 1",
        "count(order, 30d) <= 0.5",
        "count(order, 30d) > 1.5 | count(view, 1d) == 1",
        "~did(any, 30d)",
        "purchased_30d & ~active_7d",
    ]:
        assert sorted(ch.evaluate(expr)) == sorted(local.evaluate(expr)), expr


@pytest.mark.parametrize(
    ("op", "v", "want"),
    [
        (">=", 2.5, [3, 4]),
        (">", 2.5, [3, 4]),
        ("<", 2.5, [1, 2]),
        ("<=", 2.0, [1, 2]),
        ("==", 2.5, []),
        ("!=", 2.5, [1, 2, 3, 4]),
        (">=", -3, [1, 2, 3, 4]),
        ("<", 0, []),
        ("<=", float("inf"), [1, 2, 3, 4]),
        (">", float("-inf"), [1, 2, 3, 4]),
        ("==", float("nan"), []),
        ("!=", float("nan"), [1, 2, 3, 4]),
        (">=", 2**70, []),
        ("!=", 2**70, [1, 2, 3, 4]),
    ],
)
def test_count_thresholds_become_exact_integer_predicates(stores, op, v, want):
    pred = count_predicate(op, v)
    runner = stores[1].clickhouse.runner
    got = (
        runner.arrow(
            f"SELECT arraySort(groupArray(n)) AS a FROM (SELECT arrayJoin([1, 2, 3, 4]) AS n) WHERE {pred}"
        )
        .column("a")[0]
        .as_py()
    )
    assert got == want, pred


def test_too_deep_an_expression_is_refused_not_approximated(stores):
    local, ch = stores
    deep = " ^ ".join(f"(age >= {i % 60} ^ vip)" for i in range(600))
    local.size(deep)  # the local engine answers it
    with pytest.raises(InexpressibleError, match="nested bitmap functions") as exc:
        ch.size(deep)
    assert "max_ast_depth" in exc.value.reason
    # the limit is ClickHouse's own: one just under it runs
    ok = " ^ ".join(f"(age >= {i % 60} ^ vip)" for i in range(300))
    assert ch.size(ok) == local.size(ok)
    # wide unions are balanced trees, so long lists stay expressible
    wide = " | ".join(f'city == "{c}"' for c in ["SH", "BJ", "GZ", "CD"] * 200)
    assert ch.size(wide) == local.size(wide)


def test_build_refuses_bad_input_like_local(tmp_path):
    dup = pd.DataFrame({"uid": np.array([1, 1, 2], dtype=np.uint32), "x": [1, 2, 3]})
    with pytest.raises(DataError, match="uid must be unique"):
        AudienceStore.build(dup, engine="chdb", catalog=AudienceCatalog(tmp_path / "c.duckdb"))
    with pytest.raises(Exception, match="must fit in 32 bits"):
        AudienceStore.build(
            pd.DataFrame({"uid": [-1, 2], "x": [1, 2]}), engine="chdb",
            catalog=AudienceCatalog(tmp_path / "c.duckdb"),
        )  # fmt: skip


def test_close_drops_the_temporary_database(tmp_path):
    store = AudienceStore.build(
        profiles_frame(), engine="chdb", catalog=AudienceCatalog(tmp_path / "c.duckdb")
    )
    db, runner = store.clickhouse.db, store.clickhouse.runner
    names = lambda: runner.arrow("SELECT name FROM system.databases").column(0).to_pylist()  # noqa: E731
    assert db in names()
    store.close()
    assert db not in names()


def test_server_engine_needs_a_url(monkeypatch):
    monkeypatch.delenv("MKTLAB_CLICKHOUSE_URL", raising=False)
    with pytest.raises(ConfigError, match="MKTLAB_CLICKHOUSE_URL"):
        runner_for("clickhouse")
    monkeypatch.setenv("MKTLAB_CLICKHOUSE_URL", "tcp://nowhere")
    with pytest.raises(ConfigError, match="expected http"):
        clickhouse_url()
    with pytest.raises(ServiceUnavailableError, match="does not answer"):
        ServerRunner("http://default:secret@127.0.0.1:9/default")


def _server_or_skip() -> ServerRunner:
    url = clickhouse_url() or "http://default:@127.0.0.1:8123/default"
    try:
        return ServerRunner(url)
    except ServiceUnavailableError:
        pytest.skip(
            f"no ClickHouse server answers at {url} (none runs on our machines or in CI); "
            "set MKTLAB_CLICKHOUSE_URL to a server to run this test"
        )


@pytest.mark.integration
def test_server_engine_equals_local(tmp_path):
    runner = _server_or_skip()
    catalog = AudienceCatalog(tmp_path / "c.duckdb")
    local = AudienceStore.build(profiles_frame(), events_frame(), catalog=catalog)
    server = AudienceStore.build(
        profiles_frame(), events_frame(), engine="clickhouse", clickhouse_url=runner.url,
        catalog=catalog,
    )  # fmt: skip
    try:
        for expr in [
            'city in ("SH", "BJ") & age >= 30',
            'tier >= "silver" ^ vip',
            "count(order, 30d) >= 2 | ~active_7d",
            'signup between "2024-02-01" and "2024-06-30"',
        ]:
            assert sorted(server.evaluate(expr)) == sorted(local.evaluate(expr)), expr
            assert server.size(expr) == local.size(expr)
        local.save("buyers", "purchased_30d")
        assert server.clickhouse.push_saved(catalog, ["buyers"]) == ["buyers"]
        again = AudienceCatalog(tmp_path / "again.duckdb")
        server.clickhouse.pull_saved(again, ["buyers"])
        assert again.get("buyers").bitmap == catalog.get("buyers").bitmap
    finally:
        server.close()


def test_a_chdb_store_writes_a_local_file_that_reads_back_equal(stores, tmp_path):
    local, ch = stores
    path = ch.write(tmp_path / "store.duckdb")
    back = AudienceStore.read(path, catalog=local.catalog)
    for expr in ['tier >= "silver" & active_7d', "count(order, 30d) >= 2 | ~vip", "spend > 50"]:
        assert sorted(back.evaluate(expr)) == sorted(local.evaluate(expr)), expr
