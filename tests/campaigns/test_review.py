"""The retrospective on hand-built decision logs whose truth is planted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.campaigns.review import retrospective
from mktlab.errors import SchemaError, ValidationError
from mktlab.strategy import Strategy, in_holdout

STRATEGY = {
    "name": "spring",
    "policy": {"kind": "all"},
    "holdout": 0.2,
    "coupon": {"face_value": 5.0, "send_cost": 0.05, "margin": 0.4},
}


def world(n=40_000, p_treated=0.12, p_holdout=0.08, seed=1, seg_effects=None, amount=50.0):
    """A log of one coupon decision per user (holdout by the strategy's hash) and purchases."""
    rng = np.random.default_rng(seed)
    s = Strategy.from_dict(STRATEGY)
    users = [f"u{i}" for i in range(n)]
    hold = in_holdout(s, users)
    seg = rng.choice(["a", "b", "c"], n)
    p = np.where(hold, p_holdout, p_treated)
    if seg_effects is not None:
        p = np.where(hold, p_holdout, p_holdout + pd.Series(seg).map(seg_effects).to_numpy())
    conv = rng.random(n) < p
    ts = 1_700_000_000 + rng.uniform(0, 86400, n)
    dec = pd.DataFrame({
        "key": [f"k{i}" for i in range(n)], "source": "spring", "version": 1, "node": "cart",
        "user_id": users, "ts": ts, "action": "coupon",
        "status": np.where(hold, "holdout", "ok"), "holdout": hold, "segment": seg,
    })  # fmt: skip
    ev = pd.DataFrame({
        "user_id": np.array(users)[conv], "ts": ts[conv] + rng.uniform(60, 3 * 86400, conv.sum()),
        "event": "purchase", "amount": amount,
    })  # fmt: skip
    noise = pd.DataFrame(
        {"user_id": users[:50], "ts": ts[:50] + 10, "event": "view", "amount": 0.0}
    )
    return s, dec, pd.concat([ev, noise], ignore_index=True)


def test_lift_interval_covers_the_truth_and_roi_is_positive():
    s, dec, ev = world()
    r = retrospective(dec, ev, strategy=s)
    m = r.summary
    assert m["lift_lo"] < 0.04 < m["lift_hi"]
    assert m["lift_lo"] > 0
    assert m["p_value"] < 1e-6
    assert 0.2 - 0.01 < m["n_holdout"] / m["n_users"] < 0.2 + 0.01
    assert not m["srm_mismatch"]
    nt = m["n_treated"]
    assert m["incremental_conversions"] == pytest.approx(m["lift"] * nt)
    # spend: every treated converter redeemed a 5.00 coupon, every treated user cost 0.05
    treated_conv = int(r.tables["arms"].query("arm == 'not held out'")["conversions"].iloc[0])
    assert m["redemptions"] == treated_conv
    assert m["spend"] == pytest.approx(treated_conv * 5.0 + nt * 0.05)
    # 4 pp × 50 revenue × 0.4 margin = 0.8 per user against ~0.65 spend per user: positive
    assert m["roi"] > 0
    assert m["roi_lo"] < m["roi"] < m["roi_hi"]
    assert m["roi"] == pytest.approx((m["incremental_revenue"] * 0.4 - m["spend"]) / m["spend"])


def test_a_null_campaign_covers_zero_and_loses_money():
    s, dec, ev = world(p_treated=0.08, p_holdout=0.08, seed=2)
    m = retrospective(dec, ev, strategy=s).summary
    assert m["lift_lo"] < 0 < m["lift_hi"]
    assert m["roi"] < 0  # coupons paid on sales that would have happened anyway


def test_segment_effects_recover_the_planted_ones():
    effects = {"a": 0.10, "b": 0.0, "c": -0.05}
    s, dec, ev = world(n=60_000, seg_effects=effects, p_holdout=0.10, seed=3)
    r = retrospective(dec, ev, strategy=s, segments="segment")
    seg = r.tables["segments"].set_index("segment")
    for k, v in effects.items():
        assert seg.loc[k, "lift_lo"] < v < seg.loc[k, "lift_hi"], k
    assert seg.loc["a", "quadrant"] == "persuadable"
    assert seg.loc["c", "quadrant"] == "sleeping_dog"
    assert seg.loc["b", "quadrant"] in ("sure_thing", "lost_cause")
    # the same segments given as a Series by user_id
    by_user = dec.set_index("user_id")["segment"]
    seg2 = retrospective(dec, ev, strategy=s, segments=by_user).tables["segments"]
    assert seg2["lift"].tolist() == seg.reset_index()["lift"].tolist()


def test_quadrants_from_scores_attribution_and_prediction():
    effects = {"a": 0.10, "b": 0.0, "c": -0.06}
    s, dec, ev = world(n=30_000, seg_effects=effects, p_holdout=0.10, seed=4)
    scores = pd.DataFrame({"user_id": dec["user_id"], "mu0": 0.10,
                           "uplift": dec["segment"].map(effects)})  # fmt: skip
    rng = np.random.default_rng(0)
    touches = pd.DataFrame({"user_id": dec["user_id"], "ts": dec["ts"] - 3600,
                            "channel": rng.choice(["email", "push"], len(dec))})  # fmt: skip
    pred = {"spend": 10_000.0, "roi": 0.5, "reach": 20_000, "source": "sandbox.replay"}
    r = retrospective(dec, ev, strategy=s, scores=scores, touches=touches, prediction=pred)
    q = r.tables["quadrants"].set_index("quadrant")
    assert q.loc["persuadable", "observed_lift_lo"] > 0
    assert q.loc["sleeping_dog", "observed_lift_hi"] < 0
    att = r.tables["attribution"]
    assert set(att["channel"]) == {"email", "push"}
    total = int(r.tables["arms"]["conversions"].sum())
    assert att["linear_conversions"].sum() == pytest.approx(total)
    p = r.tables["prediction"].set_index("metric")
    assert p.loc["reach", "actual"] == r.summary["n_treated"]
    assert p.loc["spend", "relative_error"] == pytest.approx(
        (r.summary["spend"] - 10_000.0) / 10_000.0
    )
    assert p.loc["roi", "actual"] == pytest.approx(r.summary["roi"])


def test_per_user_outcomes_and_html(tmp_path):
    s, dec, ev = world(n=8_000, seed=5)
    per_user = ev[ev["event"] == "purchase"].groupby("user_id")["amount"].sum()
    out = pd.DataFrame(
        {"user_id": per_user.index, "converted": True, "revenue": per_user.to_numpy()}
    )
    r = retrospective(dec, out, strategy=s, segments="segment", prediction={"spend": 100.0})
    a = retrospective(dec, ev, strategy=s)
    assert r.summary["lift"] == pytest.approx(a.summary["lift"])
    path = r.to_html(tmp_path / "reports" / "spring.html")
    text = path.read_text()
    assert text.count("<img") == 2
    assert "data:image/png;base64," in text
    assert f"{r.summary['lift']:+.2%}" in text
    assert f"{r.summary['spend']:,.2f}" in text
    assert "Uplift by segment" in text
    assert "Sandbox prediction" in text
    assert not list(path.parent.glob(".*.tmp"))  # written to a temp file, then renamed
    assert "<img" in r._repr_html_()
    assert r.plot() is not None


def test_bad_inputs_say_what_is_wrong():
    s, dec, ev = world(n=2_000, seed=6)
    with pytest.raises(ValidationError, match=r"no holdout.*lift cannot be measured"):
        retrospective(dec.assign(holdout=False, status="ok"), ev, strategy=s)
    with pytest.raises(ValidationError, match="every one of"):
        retrospective(dec.assign(holdout=True), ev)
    with pytest.raises(SchemaError, match=r"decisions: missing column.*'holdout'"):
        retrospective(dec.drop(columns="holdout"), ev)
    with pytest.raises(SchemaError, match="outcomes: expected events"):
        retrospective(dec, ev.drop(columns="event"))
    with pytest.raises(ValidationError, match="none of strategy 'other'"):
        retrospective(dec, ev, strategy={**STRATEGY, "name": "other"})
    with pytest.raises(SchemaError, match="segments: 'region' is not a column"):
        retrospective(dec, ev, segments="region")
    with pytest.raises(SchemaError, match=r"touches: missing column.*'channel'"):
        retrospective(dec, ev, touches=dec[["user_id", "ts"]])
    with pytest.raises(ValidationError, match="prediction: none of"):
        retrospective(dec, ev, prediction={"foo": 1})
    m = retrospective(dec, ev.drop(columns="amount")).summary
    assert m["roi"] is None


def test_review_campaign_takes_strategy_prediction_and_rollout_from_the_lifecycle(lifecycle):
    from mktlab.campaigns.review import review_campaign
    from mktlab.campaigns.rollout import in_rollout
    from tests.campaigns.conftest import ALICE, BOB, make_spec

    lc = lifecycle
    # a fixed id: the salt (and so who is held out) is the same every run
    cid = lc.create(make_spec("review-fixed"), ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    lc.approve(cid, BOB)
    s = lc.strategy(cid)
    sim = {"spend": 1000.0, "roi": 0.4, "reach": 300, "strategy_fingerprint": s.fingerprint()}
    lc.record_simulation(cid, ALICE, sim)
    lc.launch(cid, ALICE, rollout=0.5)
    n = 6_000
    rng = np.random.default_rng(7)
    users = [f"u{i}" for i in range(n)]
    hold = in_holdout(s, users)
    ts = 1_700_000_000 + rng.uniform(0, 3600, n)
    dec = pd.DataFrame({"source": cid, "user_id": users, "ts": ts, "action": "coupon",
                        "status": np.where(hold, "holdout", "ok"), "holdout": hold})  # fmt: skip
    conv = rng.random(n) < np.where(hold, 0.05, 0.15)
    ev = pd.DataFrame({"user_id": np.array(users)[conv], "ts": ts[conv] + 60,
                       "event": "purchase", "amount": 20.0})  # fmt: skip
    r = review_campaign(lc, cid, dec, ev)
    inside = sum(in_rollout(x, s.assignment_salt, 0.5) for x in users)
    assert r.summary["n_users"] == inside  # both arms restricted to the gray traffic
    assert r.summary["strategy"] == cid
    assert r.summary["lift_lo"] < 0.10 < r.summary["lift_hi"]
    p = r.tables["prediction"].set_index("metric")
    assert p.loc["spend", "predicted"] == 1000.0
    assert p.loc["roi", "predicted"] == 0.4
    assert cid in r.title
