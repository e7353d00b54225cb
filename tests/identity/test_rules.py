"""Rule sets: validation of contradictions, YAML round trip."""

from __future__ import annotations

import pytest

from mktlab.errors import ConfigError
from mktlab.identity import IdentityRules, IdTypeRule


def test_defaults_match_the_world():
    r = IdentityRules()
    assert r.names == ["user_id", "phone", "email", "openid", "device"]
    assert r.rule("user_id").single_valued
    assert r.rule("phone").single_valued
    assert r.rule("email").max_per_person == 3
    assert r.rule("device").max_per_person == 5
    assert r.rule("openid").max_per_person == 3
    assert r.hub_threshold == 50
    assert r.order == "recency"
    assert {"", "unknown", "null", "-1", "none", "nan"} <= set(r.block_values)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"types": (IdTypeRule("a", 1), IdTypeRule("a", 2))}, "declared twice"),
        ({"types": (IdTypeRule("a", 1), IdTypeRule("b", 1))}, "priority must be unique"),
        ({"types": ()}, "at least one"),
        ({"order": "newest"}, "order"),
        ({"hub_threshold": 0}, "hub_threshold"),
        ({"block_regex": ("([",)}, "block_regex"),
    ],
)
def test_contradictory_rules_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        IdentityRules(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "", "priority": 1}, "name"),
        ({"name": "x", "priority": 1, "max_per_person": 0}, "max_per_person"),
        ({"name": "x", "priority": "1"}, "priority"),
        ({"name": "x", "priority": 1, "normalize": "upper"}, "normalize"),
    ],
)
def test_bad_type_rule(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        IdTypeRule(**kwargs)


def test_yaml_round_trip(tmp_path):
    r = IdentityRules(order="frequency", hub_threshold=7, block_values=("x",))
    p = tmp_path / "rules.yaml"
    p.write_text(r.to_yaml())
    assert IdentityRules.from_yaml(p) == r


def test_friendly_yaml_mapping_form(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(
        "types:\n  user_id: {priority: 1}\n  email: {priority: 2, max_per_person: 2, normalize: lower}\n"
        "order: frequency\n"
    )
    r = IdentityRules.from_yaml(p)
    assert r.names == ["user_id", "email"]
    assert r.rule("email").max_per_person == 2


def test_unknown_field_in_rule_file(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text("orderr: recency\n")
    with pytest.raises(ConfigError, match="orderr"):
        IdentityRules.from_yaml(p)
