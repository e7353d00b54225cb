"""Translate an audience expression into the equivalent DuckDB SQL.

This is what an analyst would otherwise write over the columnar tag table, and it is
the reference the tests and the benchmark compare bitmaps against. The semantics match
:class:`~mktlab.audience.tagstore.AudienceStore`: every atom is ``COALESCE(pred, FALSE)``
(a predicate on a missing value is false), ``~`` is ``NOT`` over the universe (profile
uids plus event uids), windows are the ``N`` days ending at ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from mktlab.audience.events import ANY, DEFAULT_EVENT_ALIASES
from mktlab.audience.lang import (
    And,
    Between,
    Compare,
    CountCmp,
    Did,
    In,
    Node,
    Not,
    Or,
    SavedRef,
    Tag,
    Xor,
    parse,
)
from mktlab.errors import ValidationError

_WINDOW_TAG = re.compile(r"^(?P<prefix>[A-Za-z_][A-Za-z0-9_]*?)_(?P<days>\d+)d$")
_SQL_OPS = {"==": "=", "!=": "<>", ">=": ">=", ">": ">", "<=": "<=", "<": "<"}
_RANK_OPS = {
    ">=": lambda i, c: i >= c,
    ">": lambda i, c: i > c,
    "<=": lambda i, c: i <= c,
    "<": lambda i, c: i < c,
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(v) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else f"'{v}'::DOUBLE"
    return str(v)


def to_sql(
    expr: str | Node,
    *,
    profiles: str = "profiles",
    events: str | None = None,
    uid: str = "uid",
    as_of: dt.date | str | None = None,
    profile_columns: set[str] | None = None,
    event_aliases: dict[str, str] | None = None,
    definitions: Callable[[str], str] | dict[str, str] | None = None,
    count_only: bool = False,
    orders: dict[str, tuple[str, ...]] | None = None,
) -> str:
    """Return a DuckDB ``SELECT`` of the uids matching ``expr``.

    Parameters
    ----------
    expr : str or Node
        The audience expression.
    profiles, events : str
        Table names (or any FROM-able SQL) of the tag table and the event table.
    uid : str
        The uid column of both.
    as_of : date or str, optional
        End day of windows (required when the expression uses windows).
    profile_columns : set of str, optional
        Profile columns; a bare name not among them is treated as a window tag.
    event_aliases : dict, optional
        Window-tag prefixes, as in the store (default ``active``->any, ``purchased``->order...).
    definitions : dict or callable, optional
        Saved audience name -> definition, for ``@name``.
    count_only : bool
        Return ``SELECT count(*)`` instead of the uids.
    orders : dict, optional
        Ordered categorical tag -> its values in order (``store.tags[t].order``). DuckDB
        compares an ENUM with a string literal as text (``'low' > 'high'``), so ``<``,
        ``>=``, ``between`` on these tags are written as ``IN`` the values the order admits.
    """
    node = parse(expr) if isinstance(expr, str) else expr
    aliases = DEFAULT_EVENT_ALIASES if event_aliases is None else event_aliases
    as_of_sql = None if as_of is None else f"DATE '{as_of}'"
    u = _ident(uid)
    ranks = {k: tuple(v) for k, v in (orders or {}).items()}

    def window(event: str, days: int) -> str:
        if events is None or as_of_sql is None:
            raise ValidationError("to_sql: windows need events= and as_of=")
        cond = f"CAST(e.ts AS DATE) BETWEEN {as_of_sql} - INTERVAL {days - 1} DAY AND {as_of_sql}"
        if event != ANY:
            cond += f" AND e.event = {_lit(event)}"
        return cond

    def col(name: str) -> str:
        return f"t.{_ident(name)}"

    def go(n: Node, stack: tuple[str, ...]) -> str:
        if isinstance(n, And):
            return "(" + " AND ".join(go(o, stack) for o in n.operands) + ")"
        if isinstance(n, Or):
            return "(" + " OR ".join(go(o, stack) for o in n.operands) + ")"
        if isinstance(n, Xor):
            parts = [go(o, stack) for o in n.operands]
            out = parts[0]
            for p in parts[1:]:
                out = f"({out} <> {p})"
            return out
        if isinstance(n, Not):
            return f"(NOT {go(n.operand, stack)})"
        if isinstance(n, SavedRef):
            if definitions is None:
                raise ValidationError(f"to_sql: @{n.name} needs definitions=")
            text = definitions(n.name) if callable(definitions) else definitions[n.name]
            if n.name in stack:
                raise ValidationError(f"to_sql: cycle through @{n.name}")
            return go(parse(text), (*stack, n.name))
        if isinstance(n, Tag):
            m = _WINDOW_TAG.match(n.name)
            if profile_columns is not None and n.name not in profile_columns and m:
                return go(Did(aliases.get(m["prefix"], m["prefix"]), int(m["days"])), stack)
            return f"COALESCE({col(n.name)}, FALSE)"
        ordered_range = isinstance(n, Between) or (
            isinstance(n, Compare) and n.op not in ("==", "!=")
        )
        if ordered_range and n.tag in ranks:  # type: ignore[union-attr]
            order = ranks[n.tag]
            lo, hi = (n.lo, n.hi) if isinstance(n, Between) else (None, None)
            keep = [
                v
                for i, v in enumerate(order)
                if (
                    order.index(lo) <= i <= order.index(hi)
                    if isinstance(n, Between)
                    else _RANK_OPS[n.op](i, order.index(n.value))
                )
            ]
            vals = ", ".join(_lit(v) for v in keep) or "NULL"
            return f"COALESCE({col(n.tag)} IN ({vals}), FALSE)"
        if isinstance(n, Compare):
            return f"COALESCE({col(n.tag)} {_SQL_OPS[n.op]} {_lit(n.value)}, FALSE)"
        if isinstance(n, Between):
            return f"COALESCE({col(n.tag)} BETWEEN {_lit(n.lo)} AND {_lit(n.hi)}, FALSE)"
        if isinstance(n, In):
            vals = ", ".join(_lit(v) for v in n.values)
            return f"COALESCE({col(n.tag)} {'NOT IN' if n.negate else 'IN'} ({vals}), FALSE)"
        if isinstance(n, Did):
            return f"(u.{u} IN (SELECT e.{u} FROM {events} e WHERE {window(n.event, n.days)}))"
        if isinstance(n, CountCmp):
            cnt = f"(SELECT count(*) FROM {events} e WHERE e.{u} = u.{u} AND {window(n.event, n.days)})"
            if n.op == "between":
                return f"({cnt} BETWEEN {_lit(n.value)} AND {_lit(n.hi)})"
            return f"({cnt} {_SQL_OPS[n.op]} {_lit(n.value)})"
        raise TypeError(type(n).__name__)

    where = go(node, ())
    universe = f"SELECT {u} FROM {profiles}"
    if events is not None:
        universe += f" UNION SELECT {u} FROM {events}"
    select = "count(*)" if count_only else f"u.{u}"
    return (
        f"WITH u AS ({universe}) SELECT {select} FROM u LEFT JOIN {profiles} t ON t.{u} = u.{u} "
        f"WHERE {where}"
    )


def to_where(expr: str | Node) -> str:
    """The WHERE clause alone, over a table aliased ``t`` (profile tags only, no windows)."""
    node = parse(expr) if isinstance(expr, str) else expr
    sql = to_sql(node, profiles="_p", count_only=True)
    return sql.split(" WHERE ", 1)[1]
