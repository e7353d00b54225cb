"""Journeys as data: a graph of typed nodes, parsed from YAML, validated, fingerprinted.

A journey is a directed graph: one ``entry`` node, then delays, waits, splits, actions
(``coupon``, ``message``, ``update``), ``rate_limit`` and ``exit`` nodes, each naming
the node(s) it leads to. Every node is a frozen dataclass checked in ``__post_init__``;
the :class:`Journey` checks the graph (one entry, known targets, nothing unreachable,
no loop a user could spin in without waiting). :func:`validate` adds the checks that
need the catalogs (audiences, templates, campaigns, event types).

Example YAML::

    name: browse-rescue
    version: 1
    campaign_id: spring-c10
    nodes:
      - {id: start, type: entry, next: wait_order, reentry: after 7d,
         trigger: {pattern: {event: view, count: 3, within: 30m, same: [category], absent: order}}}
      - {id: wait_order, type: wait, event: order, timeout: 1d, on_event: done, on_timeout: ab}
      - {id: ab, type: split, by: holdout, fraction: 0.1, holdout: done, treated: coupon}
      - {id: coupon, type: coupon, value: 10, next: done}
      - {id: done, type: exit}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from mktlab.errors import NotFoundError
from mktlab.live.journey_nodes import (
    ID_PATTERN,
    NODE_TYPES,
    SPLIT_BY,
    CouponNode,
    DelayNode,
    EntryNode,
    ExitNode,
    JourneyError,
    MessageNode,
    Node,
    RateLimitNode,
    SplitNode,
    UpdateNode,
    WaitNode,
)
from mktlab.live.journey_nodes import (
    _fail as _node_error,
)
from mktlab.rules.model import AtomicEvent, WindowPattern

MAX_VERSION = 65_535  # the runtime state stores the version in 16 bits

__all__ = [
    "NODE_TYPES",
    "SPLIT_BY",
    "CouponNode",
    "DelayNode",
    "EntryNode",
    "ExitNode",
    "Journey",
    "JourneyError",
    "MessageNode",
    "Node",
    "RateLimitNode",
    "SplitNode",
    "UpdateNode",
    "WaitNode",
    "node_from_dict",
    "validate",
]


# -------------------------------------------------------------------------- journey
def node_from_dict(d: Any, *, index: int = 0) -> Node:
    """Build one node from its YAML mapping (``id``, ``type`` and the type's keys).

    Raises
    ------
    JourneyError
        ``node <id>: ...`` for an unknown type, a missing or unknown key, a bad value.
    """
    if isinstance(d, Node):
        return d
    if not isinstance(d, Mapping):
        raise _node_error(f"#{index}", f"expected a mapping with id and type, got {d!r}")
    nid = d.get("id", f"#{index}")
    if not isinstance(nid, str) or not ID_PATTERN.fullmatch(nid):
        raise _node_error(repr(nid), "id must be letters, digits, '_', '.' or '-'")
    cls = NODE_TYPES.get(d.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise _node_error(
            nid, f"unknown node type {d.get('type')!r}; expected one of {sorted(NODE_TYPES)}"
        )
    keys = {f: k for k, f in cls.yaml_keys.items()}
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        if required and f.name != "id" and d.get(keys.get(f.name, f.name)) is None:
            if cls is SplitNode and f.name == "branches":
                continue  # split labels are checked by the split itself
            raise _node_error(
                nid, f"missing key {keys.get(f.name, f.name)!r} for a {cls.type} node"
            )
    return cls.from_dict(d)


@dataclass(frozen=True)
class Journey:
    """A named, versioned journey: nodes forming a validated graph.

    Parameters
    ----------
    name : str
        Letters, digits, ``_ . -``.
    version : int, default 1
        1..65535; bump it for every change a running user should not see mid-way.
    nodes : tuple of Node
        Exactly one :class:`EntryNode`; every target must name a node.
    campaign_id : str, optional
        The campaign the journey belongs to (default campaign of its coupon nodes).
    description : str
    salt : str, optional
        Base of the split hashes (default ``name``): keep it to keep arms across versions.
    """

    name: str
    version: int = 1
    nodes: tuple[Node, ...] = ()
    campaign_id: str | None = None
    description: str = ""
    salt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not ID_PATTERN.fullmatch(self.name):
            raise JourneyError(
                f"journey {self.name!r}: name must be letters, digits, '_', '.' or '-'"
            )
        v = self.version
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VERSION:
            raise JourneyError(
                f"journey {self.name}: version must be an integer in [1, {MAX_VERSION}], got {v!r}",
                journey=self.name,
            )
        for attr in ("campaign_id", "salt"):
            val = getattr(self, attr)
            if val is not None and (not isinstance(val, str) or not val):
                raise JourneyError(
                    f"journey {self.name}: {attr} must be a non-empty string, got {val!r}",
                    journey=self.name,
                )
        object.__setattr__(self, "nodes", tuple(self.nodes))
        for n in self.nodes:
            if not isinstance(n, Node):
                raise JourneyError(f"journey {self.name}: nodes must be Node objects, got {n!r}",
                                   journey=self.name)  # fmt: skip
        _check_graph(self)

    def _error(self, node_id: str, msg: str) -> JourneyError:
        return JourneyError(
            f"journey {self.name}: node {node_id}: {msg}", journey=self.name, node=node_id
        )

    @property
    def entry(self) -> EntryNode:
        return next(n for n in self.nodes if isinstance(n, EntryNode))

    @property
    def split_salt(self) -> str:
        return self.salt or self.name

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise NotFoundError(f"journey {self.name}: no node {node_id!r}")

    def edges(self) -> list[tuple[str, str, str]]:
        """``(source, label, target)`` for every edge, in node order."""
        return [(n.id, lab, t) for n in self.nodes for lab, t in n.targets().items()]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "version": self.version}
        for attr in ("campaign_id", "description", "salt"):
            if getattr(self, attr):
                d[attr] = getattr(self, attr)
        d["nodes"] = [n.to_dict() for n in self.nodes]
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def fingerprint(self) -> str:
        """Hash of the content without ``version``: equal journeys, equal fingerprint."""
        body = self.to_dict()
        body.pop("version")
        text = json.dumps(body, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: Any) -> Journey:
        if not isinstance(d, Mapping):
            raise JourneyError(f"journey: expected a mapping, got {type(d).__name__}")
        name = d.get("name")
        unknown = set(d) - {"name", "version", "nodes", "campaign_id", "description", "salt"}
        if unknown:
            raise JourneyError(
                f"journey {name}: unknown key(s) {sorted(map(str, unknown))}", journey=name
            )
        raw = d.get("nodes") or []
        if not isinstance(raw, list):
            raise JourneyError(f"journey {name}: nodes must be a list", journey=name)
        nodes = []
        for i, nd in enumerate(raw):
            try:
                nodes.append(node_from_dict(nd, index=i))
            except JourneyError as exc:
                raise JourneyError(f"journey {name}: {exc}", journey=name, node=exc.node) from None
        return cls(name=name, version=d.get("version", 1), nodes=tuple(nodes),  # type: ignore[arg-type]
                   campaign_id=d.get("campaign_id"), description=d.get("description") or "",
                   salt=d.get("salt"))  # fmt: skip

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> Journey:
        """Parse YAML text, or read it from a path."""
        import yaml

        text = str(text_or_path)
        if isinstance(text_or_path, Path) or (
            "\n" not in text and text.endswith((".yaml", ".yml"))
        ):
            text = Path(text_or_path).read_text()
        try:
            return cls.from_dict(yaml.safe_load(text))
        except yaml.YAMLError as exc:
            raise JourneyError(f"journey YAML: {exc}") from None


def _check_graph(j: Journey) -> None:
    seen: set[str] = set()
    for n in j.nodes:
        if n.id in seen:
            raise j._error(n.id, "duplicate node id")
        seen.add(n.id)
    entries = [n for n in j.nodes if isinstance(n, EntryNode)]
    if not entries:
        first = j.nodes[0].id if j.nodes else "-"
        raise j._error(first, "the journey has no entry node (type: entry)")
    if len(entries) > 1:
        raise j._error(
            entries[1].id, f"a second entry node (first: {entries[0].id}); one per journey"
        )
    for src, label, dst in j.edges():
        if dst not in seen:
            raise j._error(src, f"{label}: unknown target node {dst!r}")
        if dst == entries[0].id:
            raise j._error(src, f"{label}: targets the entry node; users only enter from outside")
    by_id = {n.id: n for n in j.nodes}
    reached, todo = {entries[0].id}, [entries[0].id]
    while todo:
        for t in by_id[todo.pop()].targets().values():
            if t not in reached:
                reached.add(t)
                todo.append(t)
    for n in j.nodes:
        if n.id not in reached:
            raise j._error(n.id, f"unreachable from the entry node {entries[0].id}")
        if isinstance(n, CouponNode) and not (n.campaign or j.campaign_id):
            raise j._error(
                n.id, "campaign: no campaign on the node and no campaign_id on the journey"
            )
    _check_cycles(j, by_id)


def _check_cycles(j: Journey, by_id: dict[str, Node]) -> None:
    """Refuse a loop a user could run round within one step (no wait, no real delay)."""

    def holds(n: Node) -> bool:
        return isinstance(n, WaitNode) or (isinstance(n, DelayNode) and n.always_waits)

    colour: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in by_id:
        if colour.get(root) or holds(by_id[root]):
            continue
        stack = [(root, iter(by_id[root].targets().values()))]
        path = [root]
        colour[root] = 1
        while stack:
            nid, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[nid] = 2
                stack.pop()
                path.pop()
            elif holds(by_id[nxt]) or colour.get(nxt) == 2:
                continue
            elif colour.get(nxt) == 1:
                loop = [*path[path.index(nxt) :], nxt]
                raise j._error(
                    nxt,
                    f"cycle {' -> '.join(loop)} passes through no wait or delay (a delay "
                    "window does not count: it may let users straight through)",
                )
            else:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(by_id[nxt].targets().values())))


def validate(
    journey: Journey,
    *,
    audiences: Collection[str] | None = None,
    templates: Collection[str] | None = None,
    campaigns: Collection[str] | None = None,
    events: Collection[str] | None = None,
) -> Journey:
    """Check ``journey`` against the catalogs; return it unchanged.

    The graph itself is checked when the journey is built; this adds the references.

    Parameters
    ----------
    journey : Journey
    audiences, templates, campaigns, events : collection of str, optional
        Known names; ``None`` skips that check.

    Returns
    -------
    Journey

    Raises
    ------
    JourneyError
        Naming the node that refers to an unknown audience, template, campaign or event.
    """
    if not isinstance(journey, Journey):
        raise JourneyError(f"journey: expected a Journey, got {type(journey).__name__}")
    _check_graph(journey)

    def check(node: Node, kind: str, name: str | None, known: Collection[str] | None) -> None:
        if name is not None and known is not None and name not in known:
            hint = ", ".join(sorted(map(str, known))[:8]) or "none"
            raise journey._error(node.id, f"unknown {kind} {name!r} (known: {hint})")

    for n in journey.nodes:
        for p in getattr(n, "where", ()):
            if p.namespace == "audience":
                check(n, "audience", p.name, audiences)
        if isinstance(n, EntryNode):
            check(n, "audience", n.audience, audiences)
            if isinstance(n.trigger, AtomicEvent) and n.trigger.type != "*":
                check(n, "event", n.trigger.type, events)
            elif isinstance(n.trigger, WindowPattern):
                check(n, "event", n.trigger.event, events)
                check(n, "event", n.trigger.absent, events)
        elif isinstance(n, WaitNode):
            check(n, "event", n.event, events)
        elif isinstance(n, SplitNode) and n.by == "audience":
            check(n, "audience", n.audience, audiences)
        elif isinstance(n, CouponNode):
            check(n, "campaign", n.campaign or journey.campaign_id, campaigns)
        elif isinstance(n, MessageNode):
            check(n, "template", n.template, templates)
    return journey
