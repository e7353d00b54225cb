"""The synthetic world: determinism, truth properties, noise, bad input, atomic writes."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from mktlab.datasets import TABLES, load_world, make_world
from mktlab.datasets.identities import HUB_DEVICE, JUNK_VALUES
from mktlab.errors import DataError, ValidationError


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_all_tables_written(small_world):
    for name in TABLES:
        assert small_world.table_path(name).is_file(), name
    assert small_world.meta["n_users"] == 20_000
    assert len(small_world.people) == 20_000


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_world(3_000, 11, out_dir=tmp_path / "a")
    b = make_world(3_000, 11, out_dir=tmp_path / "b")
    c = make_world(3_000, 12, out_dir=tmp_path / "c")
    for name in ("identities", "events", "campaign_truth", "touches"):
        pd.testing.assert_frame_equal(a.table(name), b.table(name))
    assert not a.campaign_truth["p0"].equals(c.campaign_truth["p0"])


def test_identity_truth_covers_every_record(small_world):
    ids, truth = small_world.identities, small_world.identity_truth
    assert set(ids.record_id.unique()) == set(truth.record_id)
    assert truth.record_id.is_unique
    assert set(ids.id_type.unique()) == {"user_id", "phone", "email", "device", "openid"}
    assert set(ids.source.unique()) == {"app_login", "web_session", "order", "partner_feed"}


def test_identity_noise_present(small_world):
    ids = small_world.identities.merge(small_world.identity_truth, on="record_id")
    junk = ids[ids.id_value.isin(JUNK_VALUES)]
    assert len(junk) > 0.01 * ids.record_id.nunique()
    hub_people = ids.loc[ids.id_value == HUB_DEVICE, "person_id"].nunique()
    assert hub_people > 30  # scales with n_users: thousands at 1M users
    real = ids[~ids.id_value.isin(JUNK_VALUES) & (ids.id_value != HUB_DEVICE)]
    owners = real.groupby(["id_type", "id_value"]).person_id.nunique()
    # shared family devices and recycled phones: real identifiers owned by two people
    assert (owners.loc["device"] == 2).sum() > 50
    assert (owners.loc["phone"] == 2).sum() > 20
    assert owners.loc["user_id"].max() == 1  # an account is never shared
    # typo'd e-mails exist
    assert real[real.id_type == "email"].id_value.str.contains("@@").any()


def test_recycled_phone_changes_owner_at_one_time(small_world):
    ids = small_world.identities.merge(small_world.identity_truth, on="record_id")
    ph = ids[(ids.id_type == "phone") & ~ids.id_value.isin(JUNK_VALUES)]
    owners = ph.groupby("id_value").person_id.nunique()
    shared = owners[owners == 2].index[:20]
    for value in shared:
        rows = ph[ph.id_value == value].sort_values("ts")
        # one owner first, the other after: the owner sequence changes exactly once
        changes = (rows.person_id != rows.person_id.shift()).sum() - 1
        assert changes == 1, value


def test_quadrant_shares_and_truth(small_world):
    truth = small_world.campaign_truth
    shares = truth.quadrant.value_counts(normalize=True)
    assert set(shares.index) == {"persuadable", "sure_thing", "lost_cause", "sleeping_dog"}
    assert shares.min() > 0.05
    assert shares.max() < 0.6
    by_q = truth.groupby("quadrant").true_uplift.mean()
    assert by_q["persuadable"] > 0.1
    assert by_q["sleeping_dog"] < -0.05
    assert abs(by_q["sure_thing"]) < 0.05
    assert abs(by_q["lost_cause"]) < 0.05
    assert np.allclose(truth.true_uplift, truth.p1 - truth.p0)
    assert truth[["p0", "p1"]].stack().between(0, 1).all()


def test_propensities_valid_and_consistent_with_arms(small_world):
    log = small_world.campaign_log
    assert log.propensity.gt(0).all()
    assert log.propensity.le(1).all()
    assert set(log.treatment.unique()) <= {0, 1}
    rnd = log[log.policy == "random"]
    assert np.allclose(rnd.propensity, 0.5)
    assert abs(rnd.treatment.mean() - 0.5) < 0.02
    tgt = log[log.policy == "targeted"]
    # logged propensity is P(logged arm): its mean over treated users predicts their count
    p_treat = np.where(tgt.treatment == 1, tgt.propensity, 1 - tgt.propensity)
    assert abs(p_treat.mean() - tgt.treatment.mean()) < 0.02
    # inverse-propensity weights of each arm sum to about the population
    n = len(tgt)
    for arm in (0, 1):
        w = (1 / tgt.propensity[tgt.treatment == arm]).sum()
        assert abs(w / n - 1) < 0.1


def test_outcomes_follow_potential_outcomes(small_world):
    log = small_world.campaign_log.merge(small_world.campaign_truth, on=["campaign_id", "user_id"])
    expected = np.where(log.treatment == 1, log.y1, log.y0)
    assert (log.converted.to_numpy() == expected).all()
    rnd = log[log.policy == "random"]
    diff = rnd[rnd.treatment == 1].converted.mean() - rnd[rnd.treatment == 0].converted.mean()
    assert abs(diff - rnd.true_uplift.mean()) < 0.02


def test_profiles_agree_with_events(small_world):
    ev = small_world.events.merge(small_world.event_truth, on="event_id")
    people = small_world.people.dropna(subset=["user_id"])
    orders = ev[ev.event == "order"].groupby("person_id").size()
    prof = small_world.profiles.merge(people, on="user_id")
    freq = orders.reindex(prof.person_id).fillna(0).to_numpy()
    assert (prof.frequency_90d.to_numpy() == freq).all()
    assert prof.tier_level.between(1, 5).all()
    assert set(prof.city.unique()) <= {"SH", "BJ", "GZ", "SZ", "CD", "HZ", "WH", "XA", "NJ", "CQ"}


def test_channel_truth_is_consistent(small_world):
    ct = small_world.channel_truth
    assert np.isclose(ct.true_share.sum(), 1)
    assert ct.true_incremental_conversions.gt(0).all()
    # bigger per-touch effects give more incremental conversions, frequency aside
    assert ct.set_index("channel").true_incremental_conversions.idxmax() in {"search", "direct"}
    conv = small_world.conversions
    assert conv.journey_id.is_unique
    tj = small_world.touches.journey_id.unique()
    assert set(tj) == set(conv.journey_id)


@pytest.mark.parametrize(
    ("n_users", "seed", "match"),
    [
        (10, 0, "n_users must be between"),
        (-5, 0, "n_users must be between"),
        ("100", 0, "n_users must be an integer"),
        (1000, -1, "seed must be a non-negative"),
        (1000, 1.5, "seed must be a non-negative"),
        (100_000_000, 0, "n_users must be between"),
    ],
)
def test_bad_arguments(tmp_path, n_users, seed, match):
    with pytest.raises(ValidationError, match=match):
        make_world(n_users, seed, out_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_interrupted_write_keeps_previous_world(tmp_path, monkeypatch):
    target = tmp_path / "w"
    make_world(1_000, 1, out_dir=target)
    before = _digest(target / "identities.parquet")
    import mktlab.datasets.world as world_mod

    def boom(self, offset):
        raise KeyboardInterrupt

    monkeypatch.setattr(world_mod._Chunk, "journeys", boom)
    with pytest.raises(KeyboardInterrupt):
        make_world(2_000, 2, out_dir=target)
    assert _digest(target / "identities.parquet") == before
    assert load_world(target).meta["n_users"] == 1_000
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temp folder left behind


def test_missing_world_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="mktlab world generate"):
        load_world(tmp_path / "nothing")
    w = make_world(500, 0, out_dir=tmp_path / "w")
    with pytest.raises(ValidationError, match="unknown world table"):
        w.table("nope")


def test_coupon_redemptions_match_treated_converters(small_world):
    ev = small_world.events
    red = ev[ev.event == "coupon_redeem"]
    log = small_world.campaign_log
    expected = log[(log.treatment == 1) & (log.converted == 1)]
    assert len(red) == len(expected)
    assert set(red.campaign_id.unique()) == {"C001", "C002"}
    assert (red.id_type == "user_id").all()
    assert ev.event_id.is_unique
    assert set(ev.event.unique()) == {"view", "cart", "order", "coupon_redeem"}


def test_touches_precede_their_conversion(small_world):
    t = small_world.touches
    c = small_world.conversions.set_index("journey_id")
    assert t.groupby("journey_id").ts.apply(lambda s: s.is_monotonic_increasing).all()
    last = t.groupby("journey_id").ts.max()
    assert (last <= c.loc[last.index, "ts"]).all()
    first = t.groupby("journey_id").ts.min()
    assert ((c.loc[first.index, "ts"] - first) <= pd.Timedelta(days=30)).all()
