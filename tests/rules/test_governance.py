from __future__ import annotations

import pytest

from mktlab.errors import NotFoundError, ValidationError
from mktlab.rules import (
    FieldSchema,
    RuleRegistry,
    RuleSet,
    RuleValidationError,
    compile_rules,
    diff,
    find_conflicts,
    problems,
    validate,
)

from .conftest import frame


def rs(*rules, caps=()):
    return RuleSet.from_dict({"name": "g", "rules": list(rules), "caps": list(caps)})


def rule(rid, when="order", conds=(), then=None, **kw):
    return {"id": rid, "when": when if isinstance(when, dict) else {"event": when}, "if": list(conds),
            "then": then or [{"issue_coupon": {"coupon": "C5", "value": 5}}], **kw}  # fmt: skip


@pytest.fixture
def schema(profiles):
    ev = frame([("a", 0, "view", "x", 0), ("a", 1, "order", "x", 10)])
    return FieldSchema.from_frames(ev, profiles.set_index("user_id"), audiences=["vip"])


def test_schema_inferred_from_frames(schema):
    assert schema.event["amount"] == "num"
    assert schema.event["category"] == "str"
    assert schema.profile == {"tier_level": "num", "city": "str"}
    assert schema.event_types == {"view", "order"}


@pytest.mark.parametrize(
    ("cond", "when", "match"),
    [
        (
            {"field": "event.amout", "op": ">", "value": 1},
            "order",
            "unknown field 'event.amout' \\(did you mean 'amount'",
        ),
        (
            {"field": "profile.tier", "op": "==", "value": "gold"},
            "order",
            "unknown field 'profile.tier'",
        ),
        ({"field": "context.moon", "op": "==", "value": 1}, "order", "unknown field"),
        (
            {"field": "event.amount", "op": ">", "value": "big"},
            "order",
            "amount is num but got 'big'",
        ),
        (
            {"field": "event.category", "op": ">", "value": 3},
            "order",
            "category is str; op '>' needs a number",
        ),
        ({"field": "event.amount", "op": "between", "value": [9, 1]}, "order", "low > high"),
        ({"audience": "vipp"}, "order", "unknown audience 'vipp' \\(did you mean 'vip'"),
        ({"field": "event.amount", "op": ">", "value": 1}, "ordr", "unknown event type 'ordr'"),
        ({"field": "context.hour", "op": ">", "value": 23}, "order", "unreachable"),
        ({"field": "event.event", "op": "==", "value": "view"}, "order", "unreachable"),
    ],
)
def test_validation_problems(schema, cond, when, match):
    with pytest.raises(RuleValidationError, match=match):
        validate(rs(rule("r1", when, [cond])), schema)


def test_unreachable_contradictions():
    bad = rs(
        rule(
            "range",
            conds=[
                {"field": "event.amount", "op": ">", "value": 100},
                {"field": "event.amount", "op": "<", "value": 50},
            ],
        ),
        rule(
            "eq",
            conds=[
                {"field": "event.category", "op": "==", "value": "a"},
                {"field": "event.category", "op": "in", "value": ["b", "c"]},
            ],
        ),
        rule(
            "null",
            conds=[
                {"field": "event.amount", "op": "is_null"},
                {"field": "event.amount", "op": ">", "value": 1},
            ],
        ),
        rule(
            "ok",
            conds=[
                {"field": "event.amount", "op": ">", "value": 10},
                {"field": "event.amount", "op": "<=", "value": 50},
            ],
        ),
    )
    found = problems(bad)
    assert sum("unreachable" in p for p in found) == 3
    assert not any("'ok'" in p for p in found)
    with pytest.raises(ValidationError):  # a RuleValidationError is a ValidationError
        compile_rules(bad)


def test_duplicate_ids_and_empty_actions_reported_together():
    r = rs(rule("x"), rule("x"), {"id": "y", "when": {"event": "view"}})
    with pytest.raises(RuleValidationError) as err:
        validate(r)
    assert len(err.value.problems) == 2
    assert "duplicate rule id" in str(err.value)
    assert "no actions" in str(err.value)


def test_coupon_stacking_conflict():
    r = rs(
        rule("big", conds=[{"field": "event.amount", "op": ">", "value": 100}]),
        rule("all_orders"),
        rule("small", conds=[{"field": "event.amount", "op": "<", "value": 50}]),
        rule("views", when="view"),
    )
    pairs = {c.rules for c in find_conflicts(r) if c.kind == "coupon_stacking"}
    # 'big' and 'small' can never fire on the same order; views never co-fire with orders
    assert pairs == {("big", "all_orders"), ("all_orders", "small")}


def test_cap_contradiction():
    r = rs(
        rule(
            "double_push",
            then=[{"send_message": {"channel": "push"}}, {"send_message": {"channel": "push"}}],
        ),
        rule("sms", then=[{"send_message": {"channel": "sms"}}]),
        caps=[
            {"channel": "push", "max": 1, "per": "1d"},
            {"channel": "sms", "max": 0, "per": "1d"},
            {"channel": "push", "max": 2, "per": "1d"},
        ],
    )
    found = [c for c in find_conflicts(r) if c.kind == "cap_contradiction"]
    assert {c.rules for c in found} == {("double_push",), ("sms",), ()}


def test_registry_versions(tmp_path):
    reg = RuleRegistry(tmp_path)
    v1 = reg.save(rs(rule("a")))
    assert v1.version == 1
    assert reg.versions("g") == [1]
    assert reg.save(rs(rule("a"))).version == 1  # same content: no new version
    v2 = reg.save(rs(rule("a"), rule("b", when="view")))
    assert v2.version == 2
    assert reg.load("g").version == 2
    assert reg.load("g", 1) == v1
    assert diff(v1, v2) == {"added": ["b"], "removed": [], "changed": [], "caps_changed": []}
    with pytest.raises(ValidationError, match="already exists"):
        reg.save(rs(rule("c")), bump=False)
    with pytest.raises(NotFoundError):
        reg.load("g", 7)
    with pytest.raises(NotFoundError):
        reg.load("nope")
