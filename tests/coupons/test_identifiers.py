"""Identifiers are whole-string matches: no control character gets through any checker.

``re.match`` with a ``$``-anchored pattern accepts ``"u1\\n"`` (``$`` matches before a
final newline), while the issuer's Lua batches are newline-joined and the ledger would
store ``"u1\\n"`` beside Redis's ``"u1"``. Every identifier checker must refuse an id
that holds a control character anywhere, and a batch with one must never reach Redis.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mktlab.audience.catalog import check_name
from mktlab.coupons import Campaign
from mktlab.coupons.campaign import check_campaign_id, check_request_id, check_user_id
from mktlab.errors import ValidationError
from mktlab.live.bus_base import check_name as check_bus_name
from mktlab.live.events import Event
from mktlab.live.journey import EntryNode, ExitNode, Journey
from mktlab.rules.model import AtomicEvent, Rule

# Line breaks Python's ``str.splitlines`` knows, the other C0 controls, DEL and C1 controls
CONTROL = sorted(
    {"\n", "\r", "\t", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x7f",
     "\x85", "\u2028", "\u2029"} | {chr(c) for c in range(0x20)}
)  # fmt: skip
SAFE = "abcXYZ019_.-"  # in every identifier alphabet, never first-character restricted


@st.composite
def poisoned(draw, max_size: int = 20) -> str:
    """A well-formed id with one control character inserted anywhere (ends included)."""
    base = draw(st.text(alphabet=SAFE, min_size=1, max_size=max_size))
    base = "a" + base  # audience names must not start with a digit or '.'
    ch = draw(st.sampled_from(CONTROL))
    at = draw(st.integers(0, len(base)))
    return base[:at] + ch + base[at:]


_RUN = itertools.count()


def _rule(rule_id: str) -> Rule:
    return Rule(id=rule_id, when=AtomicEvent("view"))


CHECKERS = {
    "campaign_id": check_campaign_id,
    "user_id": check_user_id,
    "request_id": check_request_id,
    "Campaign": lambda v: Campaign(v, stock=1),
    "audience name": check_name,
    "rule id": _rule,
    "bus group name": lambda v: check_bus_name(v, "group"),
    "event_id": lambda v: Event(event_id=v, user_id="u1", ts=1.7e9, event="view"),
    "event user_id": lambda v: Event(event_id="e1", user_id=v, ts=1.7e9, event="view"),
    "journey name": lambda v: Journey(
        v, nodes=(EntryNode(id="s", next="x", audience="vip"), ExitNode(id="x"))
    ),
    "journey node id": lambda v: Journey(
        "j", nodes=(EntryNode(id="s", next=v, audience="vip"), ExitNode(id=v))
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checkers_accept_a_plain_id(name):
    CHECKERS[name]("ab-1_c.d")


@pytest.mark.parametrize("name", sorted(CHECKERS))
@pytest.mark.parametrize("value", ["u1\n", "u1\r\n", "\nu1", "u\x001", "u1\u2028"])
def test_the_reported_cases_are_refused(name, value):
    with pytest.raises(ValidationError):
        CHECKERS[name](value)


@settings(max_examples=300, deadline=None)
@given(value=poisoned())
@example(value="u1\n")
def test_no_checker_accepts_a_control_character(value):
    for name, check in CHECKERS.items():
        with pytest.raises(ValidationError):
            check(value)
        assert name  # keeps the failing checker in hypothesis' report


@settings(max_examples=300, deadline=None)
@given(value=poisoned())
def test_the_service_schemas_refuse_a_control_character(value):
    pydantic = pytest.importorskip("pydantic")
    from mktlab.service.schemas import CampaignId, RequestId, UserId

    for kind in (CampaignId, UserId, RequestId):
        with pytest.raises(pydantic.ValidationError):
            pydantic.TypeAdapter(kind).validate_python(value)


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(alphabet=SAFE + ":@", min_size=1, max_size=12), min_size=1))
def test_valid_ids_survive_the_batch_framing(ids):
    # the script receives "\n".join(ids) and answers "|"-separated fields per line
    for i in ids:
        check_user_id(i)
        assert "\n" not in i
        assert "|" not in i
    assert "\n".join(ids).split("\n") == ids


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=poisoned(), slot=st.sampled_from(["user", "request"]))
@example(value="u1\n", slot="user")
@example(value="r1\n", slot="request")
def test_a_batch_with_a_poisoned_id_never_reaches_redis(issuer, cid, value, slot):
    cid = f"{cid}-{next(_RUN)}"  # hypothesis reuses the fixture: one campaign per example
    issuer.create_campaign(Campaign(cid, stock=5))
    bad = (value, "r-bad") if slot == "user" else ("u-bad", value)
    with pytest.raises(ValidationError, match="requests\\[1\\]"):
        issuer.issue_many(cid, [("u-ok", "r-ok"), bad, ("u-ok2", "r-ok2")])
    status = issuer.status(cid)
    assert status["issued"] == 0
    assert status["remaining"] == 5
    assert issuer.ledger.count(cid) == 0
    # the good requests of the refused batch were not decided either: they still issue
    res = issuer.issue_many(cid, [("u-ok", "r-ok")])
    assert res[0].status == "issued"
