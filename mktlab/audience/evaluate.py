"""Evaluating an audience expression against a store's bitmaps.

:class:`Evaluator` walks the AST of :func:`~mktlab.audience.lang.parse` and turns it into
bitmap algebra: pyroaring operations (:class:`~mktlab.audience.tags.RoaringAlgebra`) or a
fused dense-engine program (:class:`~mktlab.audience._dense.ProgramAlgebra`); the same
walk serves both, which is why they give identical results. Type errors and unknown names
are raised here, pointing at the offending span of the text.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from mktlab.audience._bitmaps import bitmap_from_uids
from mktlab.audience.events import ANY
from mktlab.audience.lang import (
    And,
    AudienceSyntaxError,
    AudienceTypeError,
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
    UnknownNameError,
    Xor,
    parse,
    suggest,
)
from mktlab.audience.tags import BoolTag, CategoricalTag, NumericTag
from mktlab.errors import ValidationError

if TYPE_CHECKING:  # the store hands itself in; importing it at run time would be a cycle
    from mktlab.audience.tagstore import AudienceStore

_WINDOW_TAG = re.compile(r"^(?P<prefix>[A-Za-z_][A-Za-z0-9_]*?)_(?P<days>\d+)d$")


class Evaluator:
    """Turns an AST into bitmap algebra (roaring operations or a dense-engine program)."""

    def __init__(self, store: AudienceStore, text: str, alg: Any, stack: tuple[str, ...] = ()):
        self.store = store
        self.text = text
        self.alg = alg
        self.stack = stack

    def type_error(
        self, node: Node, message: str, span: tuple[int, int] | None = None
    ) -> AudienceTypeError:
        return AudienceTypeError(message, self.text, *(span or node.span))

    def tag_span(self, node) -> tuple[int, int]:
        return (node.span[0], node.span[0] + len(node.tag))

    def eval(self, node: Node):
        method = getattr(self, "_" + type(node).__name__.lower())
        return method(node)

    # -- boolean structure
    def _and(self, node: And):
        alg = self.alg
        pos = [self.eval(o) for o in node.operands if not isinstance(o, Not)]
        neg = [o.operand for o in node.operands if isinstance(o, Not)]
        if pos:
            pos.sort(key=alg.size_hint)  # smallest first: later intersections stay small
            result = pos[0]
            for s in pos[1:]:
                if alg.known_empty(result):
                    break
                result = alg.and_(result, s)
        else:
            result = alg.universe()
        for o in neg:
            if alg.known_empty(result):
                break
            result = alg.andnot(result, self.eval(o))
        return result

    def _or(self, node: Or):
        return self.alg.union([self.eval(o) for o in node.operands])

    def _xor(self, node: Xor):
        sets = [self.eval(o) for o in node.operands]
        result = sets[0]
        for s in sets[1:]:
            result = self.alg.xor(result, s)
        return result

    def _not(self, node: Not):
        return self.alg.not_(self.eval(node.operand))

    # -- leaves
    def _savedref(self, node: SavedRef):
        if node.name in self.stack:
            cycle = " -> ".join(f"@{n}" for n in (*self.stack, node.name))
            raise AudienceTypeError(
                f"saved audiences refer to each other in a cycle: {cycle}", self.text, *node.span
            )
        saved = self.store.catalog.get(node.name, text=self.text, span=node.span)
        try:
            sub = type(self)(self.store, saved.definition, self.alg, (*self.stack, node.name))
            return sub.eval(parse(saved.definition))
        except (AudienceTypeError, UnknownNameError, AudienceSyntaxError) as exc:
            raise type(exc)(
                f"in @{node.name} = {saved.definition!r}: {exc.reason}", self.text, *node.span
            ) from exc

    def _tag(self, node: Tag):
        tag = self.store.tags.get(node.name)
        if tag is None:
            window = self._window_tag(node)
            if window is not None:
                return window
            self.store.tag(node.name, self.text, node.span)
        if isinstance(tag, BoolTag):
            return self.alg.leaf(tag.true)
        example = (
            f'{node.name} == "{next(iter(tag.values), "x")}"'
            if isinstance(tag, CategoricalTag)
            else f"{node.name} >= 1"
        )
        raise self.type_error(
            node,
            f"{node.name!r} is {tag.describe()}, not a boolean tag; compare it, e.g. {example}",
        )

    def _window_tag(self, node: Tag):
        m = _WINDOW_TAG.match(node.name)
        if not m or self.store.events is None:
            return None
        prefix, days = m["prefix"], int(m["days"])
        event = self.store.event_aliases.get(prefix, prefix)
        if event != ANY and event not in self.store.events.names:
            return None
        return self._did(Did(event, days, span=node.span))

    def _check_event(self, node: Did | CountCmp) -> tuple[int, int]:
        ev = self.store.events
        if ev is None:
            raise UnknownNameError(
                f"{node.event}: this store has no event table", self.text, *node.span
            )
        if node.event != ANY and node.event not in ev.names:
            raise UnknownNameError(
                f"unknown event {node.event!r}{suggest(node.event, [*ev.names, ANY])} (events: {', '.join(ev.names)})",
                self.text,
                *node.span,
            )
        try:
            return ev.window(node.days, self.store.as_of_day)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise AudienceTypeError(str(exc), self.text, *node.span) from None

    def _did(self, node: Did):
        start, end = self._check_event(node)
        return self.alg.leaf(self._did_members(node.event, start, end))

    # The two hooks an engine that keeps events elsewhere (ClickHouse) overrides; the
    # checks around them stay here, so every engine refuses and decides the same way.
    def _did_members(self, event: str, start: int, end: int):
        return self.store.events.did(event, start, end)  # type: ignore[union-attr]

    def _count_members(self, node: CountCmp, start: int, end: int, zero_ok: bool):
        """Users with at least one event whose count passes (fails, if ``zero_ok``)."""
        uids, counts = self.store.events.counts(node.event, start, end)  # type: ignore[union-attr]
        if node.op == "between":
            ok = (counts >= node.value) & (counts <= node.hi)  # type: ignore[operator]
        else:
            ok = _cmp(counts, node.op, node.value)  # type: ignore[arg-type]
        return bitmap_from_uids(uids[~ok] if zero_ok else uids[ok])

    def _countcmp(self, node: CountCmp):
        start, end = self._check_event(node)
        values = [node.value] if node.op != "between" else [node.value, node.hi]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.type_error(node, f"count(...) is a number; cannot compare it with {v!r}")
        key = ("count", node.event, start, end, node.op, node.value, node.hi)
        if key not in self.store.derived:
            if node.op == "between":
                zero_ok = node.value <= 0 <= node.hi  # type: ignore[operator]
            else:
                zero_ok = bool(_cmp(np.zeros(1), node.op, node.value)[0])  # type: ignore[arg-type]
            # Users without events have count 0: if 0 qualifies, keep everyone but the failures.
            self.store.derived[key] = (zero_ok, self._count_members(node, start, end, zero_ok))
        zero_ok, members = self.store.derived[key]
        leaf = self.alg.leaf(members)
        return self.alg.not_(leaf) if zero_ok else leaf

    # -- comparisons
    def _value(self, node: Node, tag, v, span=None):
        """Check a literal against the tag's type; return it converted for numeric tags."""
        if isinstance(tag, NumericTag):
            if tag.dtype in ("date", "timestamp") and isinstance(v, str):
                try:
                    if tag.dtype == "date":
                        return (dt.date.fromisoformat(v) - dt.date(1970, 1, 1)).days
                    return int(np.datetime64(v, "us").astype(np.int64))
                except ValueError:
                    raise self.type_error(
                        node,
                        f"{tag.name!r} is a {tag.dtype}; cannot read {v!r} as one (use YYYY-MM-DD)",
                        span,
                    ) from None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.type_error(
                    node,
                    f"type mismatch: {tag.name!r} is {tag.describe()}; cannot compare it with {v!r}",
                    span,
                )
            if tag.dtype in ("date", "timestamp"):
                raise self.type_error(
                    node,
                    f'type mismatch: {tag.name!r} is a {tag.dtype}; compare it with a quoted date like "2024-01-31"',
                    span,
                )
            return v
        if isinstance(tag, CategoricalTag):
            if not isinstance(v, str):
                raise self.type_error(
                    node,
                    f"type mismatch: {tag.name!r} is {tag.describe()}; compare it with a quoted value, not {v!r}",
                    span,
                )
            if v not in tag.values:
                raise UnknownNameError(
                    f"unknown value {v!r} for {tag.name!r}{suggest(v, tag.values)} "
                    f"(values: {', '.join(list(tag.values)[:20])})",
                    self.text,
                    *(span or node.span),
                )
            return v
        if isinstance(tag, BoolTag):
            if not isinstance(v, bool):
                raise self.type_error(
                    node,
                    f"type mismatch: {tag.name!r} is boolean; compare it with true or false, not {v!r}",
                    span,
                )
            return v
        raise AssertionError(tag)

    def _compare(self, node: Compare):
        alg = self.alg
        tag = self.store.tag(node.tag, self.text, self.tag_span(node))
        v = self._value(node, tag, node.value, node.value_span)
        if isinstance(tag, NumericTag):
            return tag.compare(node.op, v, alg)
        if isinstance(tag, BoolTag):
            if node.op not in ("==", "!="):
                raise self.type_error(node, f"{tag.name!r} is boolean; only == and != apply")
            want = v if node.op == "==" else not v
            return (
                alg.leaf(tag.true)
                if want
                else alg.andnot(alg.leaf(tag.present), alg.leaf(tag.true))
            )
        if node.op == "==":
            return alg.leaf(tag.values[v])
        if node.op == "!=":
            return alg.andnot(alg.leaf(tag.present), alg.leaf(tag.values[v]))
        if tag.order is None:
            raise self.type_error(
                node,
                f"{tag.name!r} is an unordered categorical; {node.op} needs an ordered one (use ==, != or in)",
            )
        code = tag.order.index(v)
        b = tag.bsi
        return {
            ">=": lambda: b.ge(code, alg),
            ">": lambda: b.ge(code + 1, alg),
            "<": lambda: b.lt(code, alg),
            "<=": lambda: b.lt(code + 1, alg),
        }[node.op]()

    def _between(self, node: Between):
        tag = self.store.tag(node.tag, self.text, self.tag_span(node))
        lo, hi = self._value(node, tag, node.lo), self._value(node, tag, node.hi)
        if isinstance(tag, NumericTag):
            return tag.between(lo, hi, self.alg)
        if isinstance(tag, CategoricalTag) and tag.order is not None:
            return tag.bsi.between(tag.order.index(lo), tag.order.index(hi), self.alg)
        raise self.type_error(
            node, f"{tag.name!r} is {tag.describe()}; 'between' needs a numeric or ordered tag"
        )

    def _in(self, node: In):
        alg = self.alg
        tag = self.store.tag(node.tag, self.text, self.tag_span(node))
        vals = [self._value(node, tag, v) for v in node.values]
        if isinstance(tag, NumericTag):
            hits = alg.union([tag.compare("==", v, alg) for v in vals])
        elif isinstance(tag, CategoricalTag):
            hits = alg.union([alg.leaf(tag.values[v]) for v in dict.fromkeys(vals)])
        else:
            hits = alg.union(
                [
                    alg.leaf(tag.true)
                    if v
                    else alg.andnot(alg.leaf(tag.present), alg.leaf(tag.true))
                    for v in vals
                ]
            )
        return alg.andnot(alg.leaf(tag.present), hits) if node.negate else hits


def _cmp(a: np.ndarray, op: str, v: float) -> np.ndarray:
    return {
        "==": a == v,
        "!=": a != v,
        ">=": a >= v,
        ">": a > v,
        "<=": a <= v,
        "<": a < v,
    }[op]
