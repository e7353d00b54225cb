from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.errors import NotFoundError, SchemaError, ValidationError
from mktlab.rules import RuleValidationError
from mktlab.rules.caps import Budget
from mktlab.sandbox import (
    CouponTerms,
    LoggedData,
    LowEffectiveSampleSizeWarning,
    TreatmentPolicy,
    Strategy,
    check_strategy,
    compare,
    decide,
    fit_reward_models,
    log_results,
    plot_comparison,
    replay,
    replay_many,
)

STRATEGY_YAML = """
name: tier3-coupon
audience: high_tier
policy: {kind: all}
coupon: {face_value: 10, send_cost: 0.5, margin: 0.3}
budget: {max_coupons: 100}
caps: [{channel: coupon, max: 1, per: 30d}]
"""


def test_strategy_yaml_round_trip():
    s = Strategy.from_yaml(STRATEGY_YAML)
    assert s.policy == TreatmentPolicy("all")
    assert s.audience == "high_tier"
    assert s.coupon == CouponTerms(10, 0.5, 0.3)
    assert s.budget == Budget(max_coupons=100)
    assert s.caps[0].per == 30 * 86400
    assert Strategy.from_yaml(s.to_yaml()) == s


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\npolicy: {kind: magic}", "policy.kind"),
        ("name: x\npolicy: {kind: random}", "rate"),
        ("name: x\npolicy: {kind: random, rate: 1.5}", "rate"),
        ("name: x\npolicy: {kind: uplift_threshold, model: m}", "exactly one"),
        ("name: x\npolicy: {kind: rule}", "rules section"),
        ("name: x\npolicy: all\nbudgett: 3", "unknown key"),
        ("name: x\npolicy: all\ncoupon: {face_value: -1}", "face_value"),
        ("name: x\npolicy: {kind: all, colour: red}", "unknown key"),
    ],
)
def test_bad_strategies(text, match):
    with pytest.raises(ValidationError, match=match):
        Strategy.from_yaml(text)


# ---------------------------------------------------------------- bad logs / refs
@pytest.mark.parametrize(
    ("value", "match"), [(0.0, "rows \\[2\\] = \\[0.0\\]"), (1.2, "> 1 is not a probability")]
)
def test_bad_propensities_refused_on_load(tiny, value, match):
    frame = tiny.frame.copy()
    frame.loc[2, "propensity"] = value
    with pytest.raises(ValidationError, match=match):
        LoggedData(frame, features=("tier_level",))


def test_unknown_arm_and_missing_columns(tiny):
    frame = tiny.frame.copy()
    frame.loc[0, "treatment"] = 7
    with pytest.raises(ValidationError, match="arms not in"):
        LoggedData(frame)
    with pytest.raises(SchemaError, match="converted"):
        LoggedData(tiny.frame.drop(columns="converted"))


def test_log_without_propensities_allows_only_on_policy_replay(tiny):
    data = LoggedData(tiny.frame.drop(columns="propensity"), features=("tier_level",))
    s = Strategy("everyone", TreatmentPolicy("all"))
    with pytest.raises(
        ValidationError,
        match=r"refusing off-policy estimation.*no propensities.*column 'propensity' is absent",
    ):
        replay(s, data, estimators=("ips", "dr"))
    with pytest.warns(LowEffectiveSampleSizeWarning, match="few logged rows agree"):
        res = replay(s, data, n_boot=50)
    assert list(res.estimates) == ["replay"]
    assert any(
        "only on-policy replay" in n.lower() or "Only on-policy replay" in n for n in res.notes
    )
    # treat everyone: replay averages the treated rows' outcomes (2 of 3 converted) over all 6
    assert res.get("conversions").value == pytest.approx(6 * 2 / 3)


def test_unknown_audience_model_and_invalid_rules_fail_before_replay(sim):
    with pytest.raises(NotFoundError, match="unknown audience 'vips'"):
        replay(Strategy("s", TreatmentPolicy("all"), audience="vips"), sim, audiences={"vip": {"u1"}})
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        replay(Strategy("s", TreatmentPolicy("uplift_threshold", model="nope", threshold=0.0)), sim)
    rules = {"name": "r", "rules": [{"id": "x", "when": {"event": "decision"},
             "if": [{"field": "event.x3", "op": ">", "value": 1}], "then": [{"issue_coupon": {"coupon": "C", "value": 1}}]}]}  # fmt: skip
    with pytest.raises(RuleValidationError, match=r"unknown field 'event\.x3'"):
        replay(Strategy.from_dict({"name": "s", "policy": "rule", "rules": rules}), sim)
    with pytest.raises(ValidationError, match=r"policy\.arm 9"):
        replay(Strategy("s", TreatmentPolicy("all", arm=9)), sim)


# ------------------------------------------------------------------------ policies
def test_treat_nobody_has_zero_increment_and_logged_policy_reproduces_the_log(sim):
    none = replay(Strategy("none", TreatmentPolicy("none")), sim, n_boot=50)
    for e in ("ips", "snips", "dm", "dr"):
        assert none.get("incremental_conversions", e).value == pytest.approx(0.0, abs=1e-9)
        assert none.get("treated", e).value == 0
    logged = replay(Strategy("logged", TreatmentPolicy("logged")), sim, n_boot=50, estimators=("ips",))
    assert logged.get("conversions").value == pytest.approx(sim.conversions.sum())
    assert logged.on_policy_rows == pytest.approx(sim.pscore.sum())


def test_audience_sources(sim):
    users = set(sim.frame["user_id"].iloc[:100])
    a = decide(
        Strategy("s", TreatmentPolicy("all"), audience="first100"), sim, audiences={"first100": users}
    )[0]
    assert a[:, 1].sum() == 100
    assert a[:100, 1].all()
    sim.frame["flag"] = sim.frame["x1"] > 0
    b = decide(Strategy("s", TreatmentPolicy("all"), audience="flag"), sim)[0]
    assert (b[:, 1] == 1).tolist() == sim.frame["flag"].tolist()

    class Store:  # anything with evaluate(expr) -> members, e.g. an audience store
        def evaluate(self, expr):
            assert expr == "x1 > 0"
            return set(sim.frame.loc[sim.frame["x1"] > 0, "user_id"])

    c = decide(Strategy("s", TreatmentPolicy("all"), audience="x1 > 0"), sim, audiences=Store())[0]
    assert (c == b).all()


def test_random_policy_uses_its_rate(sim):
    pi, _ = decide(Strategy("r", TreatmentPolicy("random", rate=0.3)), sim)
    assert np.allclose(pi[:, 1], 0.3)
    realised, _ = decide(
        Strategy("r", TreatmentPolicy("random", rate=0.3, seed=1), budget=Budget(max_coupons=10**6)), sim
    )
    assert set(np.unique(realised[:, 1])) == {0.0, 1.0}
    assert abs(realised[:, 1].mean() - 0.3) < 0.03


def test_uplift_threshold_from_a_model_object(sim, models):
    top = decide(
        Strategy("t", TreatmentPolicy("uplift_threshold", model="by_x2", top_fraction=0.3)),
        sim,
        models=models,
    )[0]
    assert top[:, 1].sum() == np.ceil(0.3 * len(sim))
    chosen = sim.frame["x2"].to_numpy()[top[:, 1] == 1]
    assert chosen.min() >= np.quantile(sim.frame["x2"], 0.69)
    thr = decide(
        Strategy("t", TreatmentPolicy("uplift_threshold", model="by_x2", threshold=0.5)), sim, models=models
    )[0]
    assert (thr[:, 1] == 1).tolist() == (sim.frame["x2"] > 0.5).tolist()


def test_caps_and_budget_in_time_order(tiny):
    s = Strategy("all", TreatmentPolicy("all"), caps=[], budget=Budget(max_coupons=2))
    pi, blocked = decide(s, tiny)
    # the two earliest decisions (a on 08-01, b on 08-02) get the coupons
    assert pi[:, 1].tolist() == [1, 1, 0, 0, 0, 0]
    assert blocked == {"capped": 0, "budget": 4}
    s = Strategy.from_dict(
        {"name": "capped", "policy": "all", "caps": [{"channel": "coupon", "max": 1, "per": "30d"}]}
    )
    pi, blocked = decide(s, tiny)
    # a again on 08-04 is within 30 days: capped; b again on 09-20 is not
    assert pi[:, 1].tolist() == [1, 1, 1, 0, 1, 1]
    assert blocked["capped"] == 1
    spend = Strategy(
        "spend", TreatmentPolicy("all"), coupon=CouponTerms(face_value=30), budget=Budget(max_spend=100)
    )
    assert decide(spend, tiny)[0][:, 1].sum() == 3


def test_rule_policy_on_logged_rows(sim):
    rules = {
        "name": "r",
        "caps": [{"channel": "coupon", "max": 1, "per": "1d"}],
        "rules": [{"id": "hi_x1", "when": {"event": "decision"}, "if": [{"field": "event.x1", "op": ">", "value": 0.5}],
                   "then": [{"issue_coupon": {"coupon": "C5", "value": 5}}]}],
    }  # fmt: skip
    s = Strategy.from_dict({"name": "rule", "policy": "rule", "rules": rules})
    pi, blocked = decide(s, sim)
    # every user appears once, so the cap never binds
    assert (pi[:, 1] == 1).tolist() == (sim.frame["x1"] > 0.5).tolist()
    assert blocked["capped"] == 0
    res = replay(s, sim, n_boot=50, estimators=("ips",))
    assert res.get("treated").value == (sim.frame["x1"] > 0.5).sum()


def test_replay_metrics_are_consistent(sim):
    q = fit_reward_models(sim)
    s = Strategy(
        "x2",
        TreatmentPolicy("all"),
        audience="pos",
        coupon=CouponTerms(face_value=10, send_cost=1, margin=0.5),
    )
    sim.frame["pos"] = sim.frame["x2"] > 0
    res = replay(s, sim, q_hat=q, n_boot=200)
    for e in ("ips", "snips", "dm", "dr"):
        m = {
            k: res.get(k, e)
            for k in ("treated", "redemptions", "cost", "incremental_revenue", "roi")
        }
        assert m["cost"].value == pytest.approx(
            10 * m["redemptions"].value + 1 * m["treated"].value
        )
        assert m["roi"].value == pytest.approx(
            (0.5 * m["incremental_revenue"].value - m["cost"].value) / m["cost"].value
        )
        iv = res.get("incremental_conversions", e)
        assert iv.lo <= iv.value <= iv.hi
    truth = float((sim.meta["mu"][:, 1] - sim.meta["mu"][:, 0])[sim.frame["pos"]].sum())
    assert res.get("incremental_conversions", "dr").covers(truth)
    assert res.get("incremental_conversions", "ips").covers(truth)
    table = res.table()
    assert set(table["estimator"]) == {"ips", "snips", "dm", "dr"}
    assert len(table) == 4 * 9


def test_compare_plot_and_mlflow(sim):
    strategies = [
        Strategy("nobody", TreatmentPolicy("none")),
        Strategy("all", TreatmentPolicy("all")),
        Strategy("half", TreatmentPolicy("random", rate=0.5)),
    ]
    check = [check_strategy(s, sim) for s in strategies]
    assert check[0] == ("ips", "snips", "dm", "dr")
    results = replay_many(strategies, sim, n_boot=50)
    table = compare(results, baseline="all")
    assert list(table.index) == ["all", "nobody", "half"]
    assert table.loc["all", "vs_baseline_incremental_conversions"] == 0
    assert table.loc["half", "incremental_conversions"] == pytest.approx(
        table.loc["all", "incremental_conversions"] / 2, rel=0.01
    )
    fig = plot_comparison(table)
    assert len(fig.axes) == 3
    run_id = log_results(results, experiment="sandbox-test", baseline="all")
    from mktlab import tracking

    runs = tracking.runs("sandbox-test")
    assert run_id in set(runs["run_id"])
    row = runs.set_index("run_id").loc[run_id]
    assert row["metrics.all.treated"] == len(sim)
    assert not np.isnan(row["metrics.half.incremental_conversions_lo"])


def test_world_log_and_truth(small_world):
    from mktlab.sandbox import from_world

    data = from_world(small_world, "C002")
    assert data.has_propensity
    assert data.meta["policy"] == "targeted"
    assert (data.meta["truth"]["user_id"].to_numpy() == data.frame["user_id"].to_numpy()).all()
    with pytest.raises(Exception, match="no campaign 'C009'"):
        from_world(small_world, "C009")
    assert isinstance(data.frame, pd.DataFrame)


def test_audience_store_expression(sim):
    """Strategies name audiences in mktlab.audience's language; bitmaps match the uid column."""
    audience = pytest.importorskip("mktlab.audience")
    sim.frame["uid"] = np.arange(len(sim), dtype=np.uint32)
    prof = pd.DataFrame(
        {"uid": sim.frame["uid"], "x1": sim.frame["x1"], "segment": sim.frame["segment"]}
    )
    store = audience.AudienceStore.build(prof)
    pi, _ = decide(
        Strategy("s", TreatmentPolicy("all"), audience='segment == "a" & x1 > 0'), sim, audiences=store
    )
    assert (pi[:, 1] == 1).tolist() == (
        (sim.frame["segment"] == "a") & (sim.frame["x1"] > 0)
    ).tolist()
    with pytest.raises(NotFoundError, match="segmnt"):
        replay(Strategy("s", TreatmentPolicy("all"), audience='segmnt == "a"'), sim, audiences=store)


def test_rule_policy_over_an_event_stream(tiny):
    """Rules fire on behaviour events; a decision is treated if its user was touched before it."""
    t = pd.Timestamp
    events = pd.DataFrame(
        {
            "user_id": ["a", "b", "b", "c", "d"],
            "ts": [
                t("2026-07-31"),
                t("2026-07-01"),
                t("2026-09-19"),
                t("2026-08-04"),
                t("2026-08-04"),
            ],
            "event": ["view", "view", "view", "view", "order"],
        }
    )
    profiles = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "tier_level": [1, 3, 5, 4]})
    rules = {"name": "r", "rules": [{"id": "v", "when": {"event": "view"},
             "if": [{"field": "profile.tier_level", "op": "<=", "value": 4}],
             "then": [{"send_message": {"channel": "push"}}]}]}  # fmt: skip
    s = Strategy.from_dict(
        {"name": "s", "policy": {"kind": "rule", "lookback": "7d"}, "rules": rules}
    )
    pi, _ = decide(s, tiny, events=events, profiles=profiles)
    # a: touched 07-31, decisions 08-01 (yes, within 7d) and 08-04 (yes); b: touched 07-01 (too
    # old for 08-02) and 09-19 (yes for 09-20); c: tier 5 never touched; d: an order, no rule
    assert pi[:, 1].tolist() == [1, 0, 0, 1, 1, 0]
    no_window = Strategy.from_dict({"name": "s", "policy": "rule", "rules": rules})
    assert decide(no_window, tiny, events=events, profiles=profiles)[0][:, 1].tolist() == [
        1,
        1,
        0,
        1,
        1,
        0,
    ]
    bad = {**rules, "rules": [{**rules["rules"][0], "when": {"event": "clik"}}]}
    with pytest.raises(RuleValidationError, match="unknown event type 'clik'"):
        replay(
            Strategy.from_dict({"name": "s", "policy": "rule", "rules": bad}),
            tiny,
            events=events,
            profiles=profiles,
        )


def test_external_policy_probabilities_on_a_multi_arm_log():
    """Any target policy given as arm probabilities (an RL or external policy) is evaluated."""
    from mktlab.sandbox import policy_value, simulate_bandit

    data, mu = simulate_bandit(4000, n_arms=4, seed=3)
    pi = np.full((len(data), 4), 0.1)
    pi[np.arange(len(data)), mu.argmax(1)] = 0.7  # mostly the best arm
    res = replay(Strategy("external", TreatmentPolicy("none")), data, pi=pi, n_boot=200)
    truth = policy_value(pi, mu)
    assert res.get("conversions", "dr").covers(truth)
    assert res.get("conversions", "ips").covers(truth)
    assert res.get("treated").value == pytest.approx((1 - pi[:, 0]).sum())
    with pytest.raises(ValidationError, match="pi: expected shape"):
        replay(Strategy("external", TreatmentPolicy("none")), data, pi=pi[:, :2])


def test_strategy_file_references_a_rules_file(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "name: r\nrules:\n  - {id: a, when: {event: decision}, then: [{issue_coupon: {coupon: C, value: 1}}]}\n"
    )
    (tmp_path / "s.yaml").write_text("name: s\npolicy: rule\nrules: rules.yaml\n")
    s = Strategy.from_yaml(tmp_path / "s.yaml")
    assert s.rules is not None
    assert [r.id for r in s.rules.rules] == ["a"]
    with pytest.raises(NotFoundError, match="does not exist"):
        Strategy.from_yaml(tmp_path / "missing.yaml")
