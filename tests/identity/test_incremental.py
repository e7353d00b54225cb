"""Stable ids across runs: merges keep the older ids, splits get fresh ones, uids never reused."""

from __future__ import annotations

import pandas as pd

from mktlab.identity import IdentityRules, resolve

from .helpers import obs, record, same_person


def two_people():
    return obs(*record(1, 1, email="e1", device="d1"), *record(2, 2, email="e2", device="d2"))


def test_rerun_keeps_every_id():
    m1 = resolve(two_people())
    m2 = resolve(obs(*record(3, 5, email="e1", openid="o1")), previous=m1)
    assert m2.lookup("email", "e1") == m1.lookup("email", "e1")
    assert m2.lookup("device", "d2") == m1.lookup("device", "d2")
    assert m2.lookup("openid", "o1") == m1.lookup("email", "e1")  # joined the existing person
    assert len(m2.history) == 0
    assert m2.next_uid == 2


def test_new_person_gets_next_uid():
    m1 = resolve(two_people())
    m2 = resolve(obs(*record(3, 5, email="new", device="dn")), previous=m1)
    assert m2.lookup("email", "new").uid == 2
    assert m2.report.new_people == 1
    assert m2.report.previous_people == 2


def test_merge_keeps_older_ids_and_is_recorded():
    m1 = resolve(two_people())
    old_a, old_b = m1.lookup("email", "e1"), m1.lookup("email", "e2")
    assert old_a.uid < old_b.uid
    m2 = resolve(obs(*record(3, 9, device="d1", email="e2")), previous=m1)
    assert same_person(m2, ("email", "e1"), ("email", "e2"))
    assert m2.lookup("device", "d2") == old_a  # survivor = the older person
    h = m2.history
    assert h["event"].tolist() == ["merge"]
    assert (h["uid"].iloc[0], h["other_uid"].iloc[0]) == (old_a.uid, old_b.uid)
    assert h["global_id"].iloc[0] == old_a.global_id
    assert h["ts"].notna().all()
    assert h["as_of"].iloc[0] == pd.Timestamp("2026-01-10")
    assert m2.report.merges == 1
    # the absorbed uid is retired for good: the next newcomer does not get it
    m3 = resolve(obs(*record(4, 10, email="x", device="dx")), previous=m2)
    assert m3.lookup("email", "x").uid == 2
    assert old_b.uid not in set(m3.mapping["uid"].tolist())


def test_split_gives_new_part_fresh_ids():
    # e1 and e2 are one person only through device "D"; a rule change blocks "D"
    m1 = resolve(obs(*record(1, 1, email="e1", device="D"), *record(2, 2, email="e2", device="D")))
    assert m1.report.n_people == 1
    person = m1.lookup("email", "e1")
    rules = IdentityRules(block_values=(*IdentityRules().block_values, "D"))
    m2 = resolve(obs(), rules=rules, previous=m1)
    assert not same_person(m2, ("email", "e1"), ("email", "e2"))
    kept = {m2.lookup("email", "e1").uid, m2.lookup("email", "e2").uid}
    assert person.uid in kept
    assert kept - {person.uid} == {1}
    split = m2.history[m2.history["event"] == "split"]
    assert len(split) == 1
    assert split["other_uid"].iloc[0] == person.uid
    assert split["uid"].iloc[0] == 1
    assert m2.report.splits == 1
    assert m2.next_uid == 2


def test_split_by_newer_evidence_under_recency():
    # A's person holds phone P and email e; later B shows up with e -> e leaves A's person
    m1 = resolve(obs(*record(1, 1, user_id="A", phone="P", email="e")))
    a = m1.lookup("user_id", "A")
    m2 = resolve(
        obs(*record(2, 30, user_id="B", email="e"), *record(3, 31, user_id="B", email="e")),
        previous=m1,
    )
    assert m2.lookup("user_id", "A") == a  # the part with the strongest id keeps the ids
    assert m2.lookup("phone", "P") == a
    assert same_person(m2, ("user_id", "B"), ("email", "e"))
    assert m2.lookup("user_id", "B").uid == 1
    assert "split" in set(m2.history["event"])


def test_uid_never_reused_over_many_runs():
    m = resolve(two_people())
    seen = set(m.mapping["uid"].tolist())
    ever = set(seen)
    for i in range(3, 9):
        # alternately merge the two newest people and add a fresh one
        m = resolve(
            obs(
                *record(i, i, email=f"e{i}", device=f"d{i}"),
                *record(100 + i, i, email=f"e{i}", device=f"d{i - 1}"),
            ),
            previous=m,
        )
        now = set(m.mapping["uid"].tolist())
        fresh = now - seen
        assert not (fresh & ever), "a uid came back"
        ever |= now
        seen = now
        assert max(ever) < m.next_uid


def test_retired_person_when_all_ids_blocked():
    m1 = resolve(two_people())
    rules = IdentityRules(block_values=(*IdentityRules().block_values, "e2", "d2"))
    m2 = resolve(obs(), rules=rules, previous=m1)
    assert m2.report.n_people == 1
    assert m2.report.retired == 1
    assert m2.history["event"].tolist() == ["retire"]
