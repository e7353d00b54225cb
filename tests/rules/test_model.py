from __future__ import annotations

import pytest

from mktlab.errors import ValidationError
from mktlab.rules import (
    AtomicEvent,
    FrequencyCap,
    IssueCoupon,
    Predicate,
    RuleSet,
    SendMessage,
    SetLifecycle,
    WindowPattern,
    parse_duration,
)

YAML = """
name: rescue
version: 2
caps:
  - {channel: push, max: 1, per: 1d}
  - {channel: "*", max: 3, per: 7d}
rules:
  - id: browse_abandon
    when: {pattern: {event: view, count: 3, within: 30m, same: [category], absent: order}}
    if:
      - {field: profile.tier_level, op: ">=", value: 2}
      - {field: context.hour, op: between, value: [9, 21]}
      - {audience: vip}
    then:
      - {send_message: {channel: push, template: browse_reminder}}
      - {issue_coupon: {coupon: C10, value: 10}}
  - id: big_order
    when: {event: order}
    priority: 5
    if: [{field: event.amount, op: ">", value: 100}]
    then: [{set_lifecycle: {state: active}}]
"""


def test_yaml_round_trip_and_fingerprint():
    rs = RuleSet.from_yaml(YAML)
    assert rs.version == 2
    assert len(rs.rules) == 2
    assert len(rs.caps) == 2
    r = rs.rule("browse_abandon")
    assert r.when == WindowPattern("view", 3, 1800, ("category",), "order")
    assert r.conditions[2] == Predicate("audience.vip", "member")
    assert r.actions == (SendMessage("push", "browse_reminder"), IssueCoupon("C10", 10.0))
    assert rs.rule("big_order").actions == (SetLifecycle("active"),)
    again = RuleSet.from_yaml(rs.to_yaml())
    assert again == rs
    assert again.fingerprint == rs.fingerprint
    # priority orders firing; the version does not change the fingerprint
    assert [x.id for x in rs.active_rules] == ["big_order", "browse_abandon"]
    assert RuleSet.from_dict({**rs.to_dict(), "version": 3}).fingerprint == rs.fingerprint


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1w", 604800), (90, 90)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: parse_duration("soon"), "duration"),
        (lambda: parse_duration(0), "positive"),
        (lambda: Predicate("amount", ">", 1), "namespace"),
        (lambda: Predicate("order.amount", ">", 1), "namespace"),
        (lambda: Predicate("event.amount", "~", 1), "unknown op"),
        (lambda: Predicate("event.amount", "in", 3), "non-empty list"),
        (lambda: Predicate("event.amount", "between", [1]), "low, high"),
        (lambda: Predicate("event.amount", ">", None), "scalar"),
        (lambda: Predicate("event.amount", "member"), "audience"),
        (lambda: WindowPattern("view", 0, "1m"), "count"),
        (lambda: WindowPattern("view", 2, "1m", absent="view"), "absent"),
        (lambda: WindowPattern("*", 2, "1m"), "event type"),
        (lambda: IssueCoupon("C1", -5), "value"),
        (lambda: SendMessage("*"), "channel"),
        (lambda: FrequencyCap("push", -1, "1d"), "max"),
        (lambda: AtomicEvent(""), "event type"),
        (lambda: RuleSet.from_dict({"name": "x", "rulez": []}), "unknown key"),
        (
            lambda: RuleSet.from_dict(
                {
                    "name": "x",
                    "rules": [{"id": "r", "when": {"event": "v"}, "then": [{"fire": {}}]}],
                }
            ),
            "issue_coupon",
        ),
        (
            lambda: RuleSet.from_dict({"name": "x", "rules": [{"id": "r", "when": {"evnt": "v"}}]}),
            "when",
        ),
        (
            lambda: RuleSet.from_dict(
                {"name": "x", "rules": [{"id": "r", "when": "v", "if": [{"feld": "x"}]}]}
            ),
            "unknown key",
        ),
        (
            lambda: RuleSet.from_dict({"name": "x", "rules": [{"id": "bad id!", "when": "v"}]}),
            "rule.id",
        ),
        (lambda: RuleSet.from_yaml("name: [unclosed"), "YAML"),
    ],
)
def test_bad_definitions_name_the_field(build, match):
    with pytest.raises(ValidationError, match=match):
        build()
