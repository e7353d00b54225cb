"""Journeys as data: parsing, round trips, and validation errors that name the node."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mktlab.errors import ValidationError
from mktlab.live.journey import (
    DelayNode,
    EntryNode,
    ExitNode,
    Journey,
    JourneyError,
    MessageNode,
    validate,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "journeys").glob("*.yaml"))
CATALOGS = {
    "audiences": {"churn_risk", "vip"},
    "templates": {
        "welcome",
        "welcome_coupon",
        "browse_coupon",
        "browse_reminder",
        "winback_coupon",
        "winback_story",
        "winback_teaser",
    },
    "campaigns": {"welcome-c5", "spring-c10", "winback-c15", "c1"},
    "events": {"signup", "order", "view", "app_open"},
}


def base() -> dict:
    return {
        "name": "demo",
        "version": 1,
        "campaign_id": "c1",
        "nodes": [
            {"id": "start", "type": "entry", "event": "signup", "next": "hello"},
            {"id": "hello", "type": "message", "template": "welcome", "next": "wait"},
            {
                "id": "wait",
                "type": "wait",
                "event": "order",
                "timeout": "3d",
                "on_event": "done",
                "on_timeout": "gift",
            },
            {"id": "gift", "type": "coupon", "value": 5, "next": "done"},
            {"id": "done", "type": "exit"},
        ],
    }


def with_nodes(*changes) -> dict:
    """``base()`` with nodes replaced by id (a dict), added (a dict with a new id) or removed (a str)."""
    d = copy.deepcopy(base())
    for ch in changes:
        if isinstance(ch, str):
            d["nodes"] = [n for n in d["nodes"] if n["id"] != ch]
            continue
        ids = [n["id"] for n in d["nodes"]]
        if ch["id"] in ids:
            d["nodes"][ids.index(ch["id"])] = ch
        else:
            d["nodes"].append(ch)
    return d


def test_base_journey_is_valid_and_validate_returns_it():
    j = Journey.from_dict(base())
    assert validate(j, **CATALOGS) is j
    assert isinstance(j.entry, EntryNode)
    assert j.entry.reentry == "never"
    assert j.edges()[0] == ("start", "next", "hello")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_parse_validate_and_round_trip(path):
    j = Journey.from_yaml(path)
    assert validate(j, **CATALOGS) is j
    again = Journey.from_yaml(j.to_yaml())
    assert again == j
    assert again.fingerprint() == j.fingerprint()
    assert Journey.from_dict(j.to_dict()) == j


def test_yaml_round_trip_of_every_node_kind():
    j = Journey.from_yaml(EXAMPLES[0])
    kinds = {n.type for p in EXAMPLES for n in Journey.from_yaml(p).nodes}
    assert kinds == {"entry", "delay", "wait", "split", "coupon", "message", "update",
                     "rate_limit", "exit"}  # fmt: skip
    assert Journey.from_yaml(str(EXAMPLES[0])) == j  # a path given as text


def test_yaml_quirks_bare_clock_and_yes_no_keys():
    text = """
name: quirks
nodes:
  - {id: s, type: entry, audience: vip, next: d}
  - {id: d, type: delay, until: 9:30, next: sp}
  - {id: sp, type: split, by: audience, audience: vip, yes: x, no: x}
  - {id: x, type: exit}
"""
    j = Journey.from_yaml(text)
    assert j.node("d").until == "09:30"  # YAML read 9:30 as the base-60 integer 570
    assert j.node("sp").branches == {"yes": "x", "no": "x"}
    assert Journey.from_yaml(j.to_yaml()) == j


def test_fingerprint_ignores_version_but_not_content():
    a = Journey.from_dict(base())
    b = Journey.from_dict(base() | {"version": 2})
    c = Journey.from_dict(with_nodes({"id": "gift", "type": "coupon", "value": 6, "next": "done"}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_nodes_built_in_python():
    j = Journey(
        "py",
        nodes=(
            EntryNode(id="s", next="m", audience="vip", reentry="after 7d"),
            DelayNode(id="m", next="msg", duration="2h"),
            MessageNode(id="msg", next="x", template="t", channels="sms"),
            ExitNode(id="x"),
        ),
    )
    assert j.entry.reentry == "after 1w"
    assert j.entry.reentry_after == 7 * 86400
    assert j.node("m").duration == 7200
    assert j.node("msg").channels == ("sms",)


CASES = [
    # (changes to base, node named, message fragment)
    ([{"id": "hello", "type": "teleport", "next": "wait"}], "hello", "unknown node type 'teleport'"),
    ([{"id": "hello", "type": "message", "template": "welcome", "next": "nowhere"}], "hello",
     "unknown target node 'nowhere'"),
    ([{"id": "hello", "type": "message", "next": "wait"}], "hello", "missing key 'template'"),
    ([{"id": "hello", "type": "message", "template": "w", "next": "wait", "colour": 1}], "hello",
     "unknown key"),
    (["start"], "hello", "no entry node"),
    ([{"id": "again", "type": "entry", "event": "order", "next": "done"}], "again",
     "a second entry node"),
    ([{"id": "orphan", "type": "exit"}], "orphan", "unreachable"),
    ([{"id": "gift", "type": "coupon", "next": "start"}], "gift", "targets the entry node"),
    ([{"id": "gift", "type": "coupon", "next": "loop"},
      {"id": "loop", "type": "update", "set": {"a": 1}, "next": "gift"}], "gift", "cycle"),
    ([{"id": "gift", "type": "coupon", "next": "win"},
      {"id": "win", "type": "delay", "until": "09:00-21:00", "next": "gift"}], "gift", "cycle"),
    ([{"id": "wait", "type": "split", "by": "random", "weights": {"a": 0, "b": 1},
       "branches": {"a": "done", "b": "gift"}}], "wait", "positive"),
    ([{"id": "wait", "type": "split", "by": "random", "branches": {"a": "done"}}], "wait",
     "at least two positive weights"),
    ([{"id": "wait", "type": "split", "by": "experiment", "arms": {"a": 1, "b": -2},
       "branches": {"a": "done", "b": "gift"}}], "wait", "positive"),
    ([{"id": "wait", "type": "split", "by": "experiment", "arms": {"a": 1, "b": 1},
       "branches": {"a": "done", "c": "gift"}}], "wait", "one target per arm"),
    ([{"id": "wait", "type": "split", "by": "holdout", "fraction": 0, "holdout": "done",
       "treated": "gift"}], "wait", "fraction"),
    ([{"id": "wait", "type": "split", "by": "holdout", "fraction": 1.0, "holdout": "done",
       "treated": "gift"}], "wait", "fraction"),
    ([{"id": "wait", "type": "split", "by": "mood", "yes": "done", "no": "gift"}], "wait", "by:"),
    ([{"id": "wait", "type": "split", "by": "audience", "audience": "vip", "yes": "done"}],
     "wait", "needs targets"),
    ([{"id": "wait", "type": "wait", "event": "order", "timeout": "3 days",
       "on_event": "done", "on_timeout": "gift"}], "wait", "duration"),
    ([{"id": "wait", "type": "wait", "event": "order", "on_event": "done", "on_timeout": "gift"}],
     "wait", "missing key 'timeout'"),
    ([{"id": "hello", "type": "delay", "duration": "0s", "next": "wait"}], "hello", "positive"),
    ([{"id": "hello", "type": "delay", "until": "25:00", "next": "wait"}], "hello", "until"),
    ([{"id": "hello", "type": "delay", "until": "09:00", "tz": "Mars/Base", "next": "wait"}],
     "hello", "unknown time zone"),
    ([{"id": "hello", "type": "delay", "duration": "1d", "until": "09:00", "next": "wait"}],
     "hello", "exactly one"),
    ([{"id": "hello", "type": "rate_limit", "max": 0, "per": "1h", "next": "wait"}], "hello",
     "max"),
    ([{"id": "start", "type": "entry", "event": "signup", "reentry": "sometimes",
       "next": "hello"}], "start", "reentry"),
    ([{"id": "start", "type": "entry", "next": "hello"}], "start", "needs 'event:'"),
    ([{"id": "start", "type": "entry", "event": "signup", "next": "hello",
       "where": [{"field": "profile.tier", "op": "==", "value": 1}]}], "start", "profile"),
    ([{"id": "hello", "type": "message", "template": "w", "channels": [], "next": "wait"}],
     "hello", "channels"),
    ([{"id": "hello", "type": "update", "next": "wait"}], "hello", "needs 'set:"),
    ([{"id": "hello", "type": "coupon", "value": -1, "next": "wait"}], "hello", "value"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "node", "fragment"), CASES)
def test_structural_errors_name_the_node(changes, node, fragment):
    with pytest.raises(JourneyError, match=rf"^journey demo: node {node}: ") as info:
        Journey.from_dict(with_nodes(*changes))
    assert fragment in str(info.value)
    assert info.value.node == node
    assert isinstance(info.value, ValidationError)


def test_duplicate_ids_and_missing_campaign():
    d = base()
    d["nodes"].append({"id": "gift", "type": "exit"})
    with pytest.raises(JourneyError, match=r"^journey demo: node gift: duplicate node id"):
        Journey.from_dict(d)
    d = base()
    del d["campaign_id"]
    with pytest.raises(JourneyError, match=r"^journey demo: node gift: campaign"):
        Journey.from_dict(d)


def test_a_cycle_through_a_wait_or_a_real_delay_is_allowed():
    loop = {"id": "gift", "type": "coupon", "next": "later"}
    for hold in ({"id": "later", "type": "delay", "duration": "7d", "next": "gift"},
                 {"id": "later", "type": "delay", "until": "09:00", "next": "gift"},
                 {"id": "later", "type": "wait", "event": "order", "timeout": "1d",
                  "on_event": "done", "on_timeout": "gift"}):  # fmt: skip
        Journey.from_dict(with_nodes(loop, hold))


@pytest.mark.parametrize(
    ("changes", "catalog", "node", "fragment"),
    [
        ([], {"templates": {"other"}}, "hello", "unknown template 'welcome'"),
        ([], {"campaigns": {"other"}}, "gift", "unknown campaign 'c1'"),
        ([], {"events": {"signup"}}, "wait", "unknown event 'order'"),
        ([], {"events": {"order"}}, "start", "unknown event 'signup'"),
        ([{"id": "start", "type": "entry", "audience": "vip", "next": "hello"}],
         {"audiences": {"churn_risk"}}, "start", "unknown audience 'vip'"),
        ([{"id": "wait", "type": "split", "by": "audience", "audience": "ghosts", "yes": "done",
           "no": "gift"}], {"audiences": {"vip"}}, "wait", "unknown audience 'ghosts'"),
        ([{"id": "wait", "type": "wait", "event": "order", "timeout": "1d", "on_event": "done",
           "on_timeout": "gift", "where": [{"audience": "ghosts"}]}], {"audiences": {"vip"}},
         "wait", "unknown audience 'ghosts'"),
        ([{"id": "start", "type": "entry", "next": "hello",
           "trigger": {"pattern": {"event": "view", "count": 2, "within": "1h",
                                   "absent": "refund"}}}],
         {"events": {"view", "order"}}, "start", "unknown event 'refund'"),
    ],
)  # fmt: skip
def test_validate_names_the_node_with_an_unknown_reference(changes, catalog, node, fragment):
    j = Journey.from_dict(with_nodes(*changes))
    with pytest.raises(JourneyError, match=rf"^journey demo: node {node}: {fragment}"):
        validate(j, **catalog)
    assert validate(j) is j  # None = do not check


def test_bad_top_level_values():
    with pytest.raises(JourneyError, match="version"):
        Journey.from_dict(base() | {"version": 0})
    with pytest.raises(JourneyError, match="name"):
        Journey.from_dict(base() | {"name": "has space"})
    with pytest.raises(JourneyError, match="unknown key"):
        Journey.from_dict(base() | {"owner": "me"})
    with pytest.raises(JourneyError, match="YAML"):
        Journey.from_yaml("name: [unclosed\n")
    with pytest.raises(JourneyError, match=r"node #1: expected a mapping"):
        Journey.from_dict(base() | {"nodes": [base()["nodes"][0], "oops"]})
