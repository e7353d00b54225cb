"""The breakers on a real Redis issuer and ledger: planted faults pause the campaign, healthy ones run."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from mktlab.campaigns.watch import (
    BudgetBurn,
    CampaignCounters,
    ErrorSpike,
    HarmfulEffect,
    Reconciliation,
    Watcher,
)
from tests.campaigns.conftest import ALICE, BOB, make_spec


def launched(lc, **spec_kw):
    cid = lc.create(make_spec(**spec_kw), ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    lc.approve(cid, BOB)
    s = lc.strategy(cid)
    lc.record_simulation(
        cid,
        ALICE,
        {"spend": 100.0, "reach": 50, "roi": 0.2, "strategy_fingerprint": s.fingerprint()},
    )
    lc.launch(cid, ALICE, rollout=1.0)
    return cid


def issue(lc, cid, n, start=0):
    out = lc.issuer.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(start, start + n)])
    assert all(r.issued for r in out)


@pytest.fixture
def watcher(lifecycle):
    return Watcher(lifecycle, registry=CollectorRegistry(), interval=0.2)


def test_a_healthy_campaign_is_left_running_over_many_ticks(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    issue(lifecycle, cid, 5)
    counters = CampaignCounters(lifecycle.issuer.redis, lifecycle.namespace)
    for _ in range(30):  # equal conversion in both arms, looked at every tick
        counters.add(cid, decisions=100, treated=90, holdout=10, conv_treated=9, conv_holdout=1)
        assert watcher.tick() == []
    assert lifecycle.get(cid)["state"] == "full"


def test_stock_raised_behind_the_issuers_back_pauses_the_campaign(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    issue(lifecycle, cid, 5)
    assert watcher.tick() == []
    meta = lifecycle.issuer._keys(cid, 0)["meta"]  # plant: someone edits Redis by hand
    field = next(
        k for k in (b"remaining", b"stock", b"left") if lifecycle.issuer.redis.hexists(meta, k)
    )
    lifecycle.issuer.redis.hincrby(meta, field, 500)
    trips = watcher.tick()
    assert [t.breaker for t in trips] == ["reconciliation"]
    assert trips[0].detail["excess_stock"] == 500
    rec = lifecycle.get(cid)
    assert (rec["state"], rec["state_reason"]) == ("paused", "breaker:reconciliation")
    assert lifecycle.issuer.status(cid)["paused"] is True
    log = lifecycle.history(cid)
    last = log.iloc[-1]
    assert (last["actor"], last["action"], last["to_state"]) == (
        "system:watch",
        "campaign.pause",
        "paused",
    )
    assert "Redis and the ledger disagree" in last["detail"]["why"]


def test_a_harmful_variant_is_caught_by_the_anytime_valid_monitor(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    counters = CampaignCounters(lifecycle.issuer.redis, lifecycle.namespace)
    trips, ticks = [], 0
    while not trips and ticks < 60:  # treated convert at 5%, the holdout at 10%
        counters.add(cid, decisions=500, treated=450, holdout=50, conv_treated=22, conv_holdout=5)
        trips = watcher.tick()
        ticks += 1
    assert [t.breaker for t in trips] == ["harmful_effect"]
    assert trips[0].detail["hi"] < 0
    assert lifecycle.get(cid)["state_reason"] == "breaker:harmful_effect"


def test_budget_burn_and_error_spikes_trip(lifecycle, watcher):
    burn = launched(lifecycle, audience="young")
    issue(lifecycle, burn, 40)  # 200 spent in the first seconds of a 500-a-day plan
    spike = launched(lifecycle, audience="seniors")
    CampaignCounters(lifecycle.issuer.redis, lifecycle.namespace).add(
        spike, decisions=1000, errors=90
    )
    got = {t.breaker for t in watcher.tick()}
    assert got == {"budget_burn", "error_spike"}
    assert lifecycle.get(burn)["state_reason"] == "breaker:budget_burn"
    assert lifecycle.get(spike)["state_reason"] == "breaker:error_spike"


def test_the_breakers_alone():
    from mktlab.campaigns.spec import CampaignSpec
    from mktlab.campaigns.watch import Observation

    spec = CampaignSpec.from_dict(make_spec())
    now = time.time()
    st = {"stock": 100, "issued": 10, "remaining": 90, "ledger_issued": 10, "budget_used": 50.0}
    ok = Observation("c", spec, now - 86400, now, st, dict.fromkeys(("decisions", "treated", "holdout",
                     "conv_treated", "conv_holdout", "redeemed", "errors"), 0))  # fmt: skip
    assert Reconciliation().check(ok) is None
    assert BudgetBurn().check(ok) is None  # 50 spent of a 500-a-day plan after a day
    assert ErrorSpike().check(ok) is None
    assert HarmfulEffect().check(ok) is None  # no data yet
    lost = Observation("c", spec, now - 86400, now, {**st, "issued": 12}, ok.counters)
    t = Reconciliation().check(lost)
    assert t.detail["unrecorded"] == 2
    assert t.detail["loss"] == 10.0
    assert t.detail["loss_rate"] == pytest.approx(0.2)


def test_metrics_are_exported_per_campaign(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    issue(lifecycle, cid, 3)
    watcher.tick()
    from prometheus_client import generate_latest

    text = generate_latest(watcher.registry).decode()
    assert "mktlab_campaign_watch_errors_total{" not in text, text  # the pass read the campaign
    assert f'mktlab_campaign_issued{{campaign="{cid}"}} 3.0' in text, text
    assert f'mktlab_campaign_spend{{campaign="{cid}"}} 15.0' in text
    assert f'mktlab_campaign_reconcile_mismatch{{campaign="{cid}"}} 0.0' in text
    assert watcher.last_tick["campaigns"] == 1


def test_budget_raised_behind_the_issuers_back_is_a_mismatch(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    issue(lifecycle, cid, 4)
    assert watcher.tick() == []
    meta = lifecycle.issuer._keys(cid, 0)["meta"]
    lifecycle.issuer.redis.hincrby(meta, "budget", 10_000)  # 100.00 more to spend, in cents
    trips = watcher.tick()
    assert [t.breaker for t in trips] == ["reconciliation"]
    assert trips[0].detail["excess_budget"] == pytest.approx(100.0)
    assert lifecycle.get(cid)["state_reason"] == "breaker:reconciliation"


def test_over_issue_loss_and_loss_rate():
    from mktlab.campaigns.spec import CampaignSpec
    from mktlab.campaigns.watch import Observation

    spec = CampaignSpec.from_dict(make_spec())
    now = time.time()
    zero = dict.fromkeys(("decisions", "treated", "holdout", "conv_treated", "conv_holdout",
                          "redeemed", "errors"), 0)  # fmt: skip
    st = {"stock": 100, "issued": 103, "remaining": 0, "ledger_issued": 103, "budget_used": 515.0,
          "cost_cents": 500, "budget_cents": 5_000_00}  # fmt: skip
    t = Reconciliation().check(Observation("c", spec, now - 60, now, st, zero))
    assert t.detail["excess_stock"] == 3
    assert t.detail["loss"] == pytest.approx(15.0)  # three coupons beyond the stock
    assert t.detail["loss_rate"] == pytest.approx(15 / 515)
    # Redis forgot issues the ledger holds: its remaining stock would over-issue
    st = {**st, "issued": 10, "remaining": 90, "ledger_issued": 12, "budget_used": 60.0}
    t = Reconciliation().check(Observation("c", spec, now - 60, now, st, zero))
    assert t.detail["excess_stock"] == 2
    assert t.detail["loss"] == 0
    # within tolerance: no trip
    assert (
        Reconciliation(tolerance=2).check(Observation("c", spec, now - 60, now, st, zero)) is None
    )


def test_an_error_spike_after_a_long_healthy_run_is_not_diluted(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    counters = CampaignCounters(lifecycle.issuer.redis, lifecycle.namespace)
    t = time.time()
    for k in range(20):  # 100,000 healthy decisions over 20 minutes
        counters.add(cid, decisions=5_000, errors=5)
        assert watcher.tick(now=t + 60 * k) == []
    # 20% errors in the last tick: 6.7% over the 5-minute window, 1.9% over the whole run
    counters.add(cid, decisions=10_000, errors=2_000)
    trips = watcher.tick(now=t + 60 * 20)
    assert [x.breaker for x in trips] == ["error_spike"]
    assert trips[0].detail["decisions"] == 4 * 5_000 + 10_000
    assert trips[0].detail["window_s"] == pytest.approx(300)
    assert trips[0].detail["rate"] > 0.05


def test_the_reconciliation_delay_is_recorded_per_campaign(lifecycle, watcher):
    a = launched(lifecycle, audience="young")
    b = launched(lifecycle, audience="seniors")
    watcher.tick()
    first = dict(watcher.last_reconciled_at)
    time.sleep(0.05)
    t_write = time.time()
    issue(lifecycle, a, 2)  # a ledger write between two passes
    watcher.tick()
    assert set(watcher.last_reconciled_at) == {a, b}
    assert watcher.last_reconciled_at[a] >= t_write > first[a]
    assert watcher.reconcile_delay[a] >= watcher.last_reconciled_at[a] - first[a]
    from prometheus_client import generate_latest

    text = generate_latest(watcher.registry).decode()
    assert f'mktlab_campaign_reconcile_delay_seconds{{campaign="{a}"}}' in text
    assert f'mktlab_campaign_state{{campaign="{a}",state="full"}} 1.0' in text
    assert f'mktlab_campaign_state{{campaign="{a}",state="paused"}} 0.0' in text
    assert f'mktlab_campaign_ledger_issued{{campaign="{a}"}} 2.0' in text


def test_a_paused_campaign_is_watched_but_not_paused_again(lifecycle, watcher):
    cid = launched(lifecycle, audience="young")
    CampaignCounters(lifecycle.issuer.redis, lifecycle.namespace).add(
        cid, decisions=1000, errors=500
    )
    assert [t.breaker for t in watcher.tick()] == ["error_spike"]
    n = len(lifecycle.history(cid))
    assert watcher.tick() == []
    assert len(lifecycle.history(cid)) == n
    from prometheus_client import generate_latest

    text = generate_latest(watcher.registry).decode()
    assert f'mktlab_campaign_state{{campaign="{cid}",state="paused"}} 1.0' in text
    assert (
        f'mktlab_campaign_breaker_trips_total{{breaker="error_spike",campaign="{cid}"}} 1.0' in text
    )


def test_each_registry_gets_its_own_metrics_even_after_others_are_collected():
    """The metric sets were cached by id(registry): a new registry at a reused address got none."""
    import gc

    from prometheus_client import generate_latest

    from mktlab.campaigns.watch import campaign_metrics

    for _ in range(50):
        reg = CollectorRegistry()
        campaign_metrics(reg)["state"].labels(campaign="c", state="paused").set(1)
        assert (
            'mktlab_campaign_state{campaign="c",state="paused"} 1.0'
            in generate_latest(reg).decode()
        )
        del reg
        gc.collect()
