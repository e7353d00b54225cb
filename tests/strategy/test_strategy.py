"""One strategy object: schema errors, the saved catalog, eligibility and the cap ledgers."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.coupons import get_redis
from mktlab.errors import NotFoundError, ValidationError
from mktlab.rules.model import FrequencyCap
from mktlab.strategy import (
    Eligibility,
    MemoryCapLedger,
    RedisCapLedger,
    Strategy,
    StrategyCatalog,
    TreatmentPolicy,
    in_holdout,
    random_draw,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "strategies" / "browse-rescue.yaml"


class Ctx:
    def __init__(self, members=(), uplift=None):
        self.members, self._uplift = set(members), uplift or {}

    def in_audience(self, audience, user_id):
        return user_id in self.members

    def uplift(self, user_id):
        return self._uplift.get(user_id)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\npolicy: all\nholdout: 1.5", r"strategy\.holdout"),
        ("name: x\npolicy: all\nchannels: [pigeon]", r"strategy\.channels\.0"),
        ("name: x\npolicy: all\ncaps: [{max: 1}]", r"strategy\.caps\.0.*per"),
        ("name: x\npolicy: {kind: random, rate: high}", r"strategy\.policy\.rate"),
        ("name: x\npolicy: all\nversion: 0", r"strategy\.version"),
        ("name: x\npolicy: all\ncampaign_id: 'bad id'", "campaign_id"),
        ("name: x\npolicy: all\ntemplates: {t: {text: hi}}", r"strategy\.templates\.t"),
    ],
)
def test_schema_errors_name_the_path(text, match):
    with pytest.raises(ValidationError, match=match):
        Strategy.from_yaml(text)


def test_rule_sending_an_undefined_template_is_refused():
    text = EXAMPLE.read_text().replace("template: cart}", "template: nope}")
    with pytest.raises(ValidationError, match="template 'nope'"):
        Strategy.from_yaml(text)


def test_example_round_trips_and_has_a_stable_fingerprint():
    s = Strategy.from_yaml(EXAMPLE)
    again = Strategy.from_yaml(s.to_yaml())
    assert again == s and again.fingerprint() == s.fingerprint()
    assert s.key == "browse-rescue:v1"
    assert s.message_channels("push") == ("push", "sms")


def test_catalog_versions_and_campaign_lookup(tmp_path):
    cat, other = StrategyCatalog(tmp_path), StrategyCatalog(tmp_path)
    s = Strategy("a", TreatmentPolicy("all"), campaign_id="c1")
    cat.save(s)
    assert other.get("a") == s and other.for_campaign("c1") == s
    assert other.for_campaign("c2") is None
    changed = Strategy("a", TreatmentPolicy("none"), campaign_id="c1")
    with pytest.raises(ValidationError, match="save it as version 2"):
        cat.save(changed)
    cat.save(Strategy("a", TreatmentPolicy("none"), campaign_id="c1", version=2))
    assert StrategyCatalog(tmp_path).get("a").version == 2
    with pytest.raises(ValidationError, match="governed by strategy 'a'"):
        cat.save(Strategy("b", TreatmentPolicy("all"), campaign_id="c1"))
    with pytest.raises(NotFoundError, match="strategy 'zz'"):
        cat.get("zz")


def test_holdout_and_random_draws_are_deterministic_and_sized():
    s = Strategy("h", TreatmentPolicy("random", rate=0.3), holdout=0.2)
    users = [f"u{i}" for i in range(20_000)]
    hold = in_holdout(s, users)
    assert abs(hold.mean() - 0.2) < 0.015
    assert np.array_equal(hold, in_holdout(s, users))
    draw = random_draw(s, users)
    assert abs((draw[~hold] < 0.3).mean() - 0.3) < 0.015
    # another salt is another draw
    s2 = Strategy("h2", TreatmentPolicy("random", rate=0.3), holdout=0.2)
    assert not np.array_equal(hold, in_holdout(s2, users))


def test_eligibility_order_and_propensities():
    s = Strategy(
        "e",
        TreatmentPolicy("uplift_threshold", model="m", threshold=0.02),
        audience="vip",
        holdout=0.5,
        caps=(FrequencyCap("coupon", 1, "1d"),),
    )
    users = [f"u{i}" for i in range(40)]
    hold = dict(zip(users, in_holdout(s, users), strict=True))
    ctx = Ctx(members=users[:30], uplift={u: (0.05 if i % 2 else 0.0) for i, u in enumerate(users)})
    el = Eligibility(s, ctx, MemoryCapLedger())
    seen = set()
    for i, u in enumerate(users):
        v = el.check(u, "coupon", 1000.0, f"k{u}")
        if hold[u]:
            assert (v.status, v.holdout, v.propensity) == ("holdout", True, 0.5)
        elif i >= 30:
            assert v.status == "not_in_audience" and v.propensity == 1.0
        elif i % 2 == 0:
            assert v.status == "low_uplift" and v.uplift == 0.0
        else:
            assert v.allowed and v.propensity == 0.5
            again = el.check(u, "coupon", 2000.0, f"k2{u}")
            assert again.status == "capped"
            assert el.check(u, "coupon", 1000.0, f"k{u}").allowed  # a replay of the same key
        seen.add(v.status)
    assert seen == {"holdout", "not_in_audience", "low_uplift", "ok"}
    with pytest.raises(ValidationError, match="threshold"):
        Eligibility(
            Strategy("t", TreatmentPolicy("uplift_threshold", model="m", top_fraction=0.3)),
            ctx,
            MemoryCapLedger(),
        )


@pytest.fixture(scope="module")
def redis_ns():
    r = get_redis()
    ns = f"tcap{uuid.uuid4().hex[:8]}"
    yield r, ns
    for k in r.scan_iter(f"{ns}*"):
        r.delete(k)


@settings(max_examples=25, deadline=None)
@given(
    acts=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["coupon", "push", "sms"]),
            st.integers(0, 50_000),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_redis_and_memory_cap_ledgers_agree(redis_ns, acts):
    r, base = redis_ns
    ns = f"{base}:{uuid.uuid4().hex[:6]}"
    caps = (
        FrequencyCap("coupon", 1, "1h"),
        FrequencyCap("*", 2, "3h"),
        FrequencyCap("sms", 0, "1d"),
    )
    mem, red = MemoryCapLedger(), RedisCapLedger(r, ns)
    acts = sorted(acts, key=lambda a: a[2])
    prev = None
    for i, (user, ch, ts, replay) in enumerate(acts):
        key = f"k{i}"
        if replay and prev is not None:  # a redelivered event repeats its action exactly
            user, ch, ts, key = prev
        prev = (user, ch, ts, key)
        a = mem.check_and_record(user, ch, float(ts), key, caps)
        b = red.check_and_record(user, ch, float(ts), key, caps)
        assert a == b, (i, user, ch, ts, key)


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.sampled_from(["coupon", "push", "sms"]),
                st.integers(0, 500),
                st.integers(0, 6),
            ),
            max_size=30,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_batch_cap_flush_leaves_the_state_of_one_add_trim_expire_per_set(redis_ns, batches):
    """BatchCapLedger.flush (one script call per user) == ZADD, ZREMRANGEBYSCORE, EXPIRE per set."""
    from mktlab.strategy.eligibility import BatchCapLedger

    r, base = redis_ns
    ns_a, ns_b = f"{base}:{uuid.uuid4().hex[:6]}", f"{base}:{uuid.uuid4().hex[:6]}"
    keep = 100  # small: out-of-order and old records get trimmed
    led_a = RedisCapLedger(r, ns_a, retention=keep)
    led_b = RedisCapLedger(r, ns_b, retention=keep)
    batch = BatchCapLedger(led_a, ["coupon", "push", "sms"])
    for recs in batches:
        batch.prefetch([u for u, *_ in recs], 0.0)
        by_key: dict[str, dict[str, float]] = {}
        latest: dict[str, float] = {}
        for user, ch, ts, k in recs:
            key = f"k{k}"
            before = len(batch._new)
            batch.record(user, ch, float(ts), key)
            if len(batch._new) > before:  # what the batch will write, the reference too
                for rk in led_b.keys_of(user, ch):
                    by_key.setdefault(rk, {})[key] = float(ts)
                    latest[rk] = max(latest.get(rk, float(ts)), float(ts))
        batch.flush()
        pipe = r.pipeline(transaction=False)
        for rk, members in by_key.items():
            pipe.zadd(rk, members)
            pipe.zremrangebyscore(rk, "-inf", f"({latest[rk] - keep}")
            pipe.expire(rk, keep + 3600)
        pipe.execute()
    for user in "abc":
        for ch in ("coupon", "push", "sms", "*"):
            ka, kb = led_a.keys_of(user, ch)[0], led_b.keys_of(user, ch)[0]
            assert r.zrange(ka, 0, -1, withscores=True) == r.zrange(kb, 0, -1, withscores=True)
            assert r.exists(ka) == r.exists(kb)
            if r.exists(ka):
                assert abs(r.ttl(ka) - r.ttl(kb)) <= 1
