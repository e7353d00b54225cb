"""resolve(engine="spark") gives the local engine's map: same people, same ids, same audit.

Real Spark (local[2], one session per test run); small inputs keep each resolve ~10 s.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.errors import ConfigError, DataError, ValidationError
from mktlab.identity import IdentityRules, assign_records, pairwise_scores, resolve

from .helpers import obs, people_of, record, same_person

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def assert_same_map(a, b) -> None:
    """Everything two maps hold agrees, apart from wall-clock timestamps and timings."""
    pd.testing.assert_frame_equal(a.mapping, b.mapping)
    pd.testing.assert_frame_equal(a.nodes, b.nodes)
    pd.testing.assert_frame_equal(a.edges, b.edges)
    pd.testing.assert_frame_equal(a.audit, b.audit)
    pd.testing.assert_frame_equal(a.excluded, b.excluded, check_dtype=False)
    pd.testing.assert_frame_equal(
        a.history.drop(columns="ts"), b.history.drop(columns="ts"), check_dtype=False
    )
    assert a.next_uid == b.next_uid
    ra, rb = a.report.to_dict(), b.report.to_dict()
    ra.pop("seconds"), rb.pop("seconds")
    assert ra == rb


def rule_cases() -> pd.DataFrame:
    """Every rule on one input: independent little graphs, each with a known answer."""
    rows = [
        *record(1, 1, user_id="A", device="d1"),  # a plain star chain
        *record(2, 2, device="d1", email=" Ann@X.com "),  # normalised email joins it
        *record(3, 3, email="ann@x.com", openid="oA"),
        *record(4, 1, user_id="R1", phone="P"),  # recycled phone: 3 old records, 1 new
        *record(5, 3, user_id="R1", phone="P"),
        *record(6, 5, user_id="R1", phone="P"),
        *record(7, 20, user_id="R2", phone="P"),
        *record(8, 1, user_id="S", phone="s1"),  # a user seen with two phones
        *record(9, 9, user_id="S", phone="s2"),
        *record(10, 1, user_id="mum", device="tablet"),  # shared family device
        *record(11, 2, user_id="kid", device="tablet"),
        *record(12, 1, user_id="Z1", phone="000000"),  # blocklist: value and regex
        *record(13, 1, user_id="Z2", phone="000000", device="UNKNOWN"),
    ]
    rows += [r for i in range(5) for r in record(20 + i, i, user_id="L", email=f"l{i}@x.com")]
    rows += [r for i in range(55) for r in record(100 + i, i % 30, user_id=f"h{i}", device="HUB")]
    # records whose strongest identifier is the hub are re-linked around it
    rows += [(300, 4, "device", "HUB"), (300, 4, "device", "dx"), (300, 4, "device", "dy")]
    return obs(*rows)


def test_rules_match_local_engine_recency_with_quarantine(spark):
    o = rule_cases()
    bad = pd.DataFrame(
        {
            "record_id": [900, 901, 902],
            "ts": [pd.Timestamp("2026-01-02"), pd.NaT, pd.Timestamp("2026-01-03")],
            "id_type": ["fax", "user_id", "phone"],
            "id_value": ["1", "Q", None],
        }
    )
    o = pd.concat([o, bad], ignore_index=True)
    local = resolve(o, errors="quarantine")
    m = resolve(o, errors="quarantine", engine="spark")
    assert_same_map(local, m)
    pd.testing.assert_frame_equal(local.quarantine, m.quarantine)
    assert m.report.n_quarantined == 3
    # and the rules did what they say, on Spark
    assert same_person(m, ("phone", "P"), ("user_id", "R2"))
    assert same_person(m, ("user_id", "S"), ("phone", "s2"))
    assert not same_person(m, ("user_id", "mum"), ("user_id", "kid"))
    assert same_person(m, ("user_id", "A"), ("openid", "oA"))
    assert m.report.hubs == {"device": 1}
    assert same_person(m, ("device", "dx"), ("device", "dy"))
    assert m.report.blocked == {"phone": 2, "device": 1}
    assert m.report.refused["limit:email"] == 2
    with pytest.raises(DataError, match=r"observations\.id_type: 1 row\(s\) is not a known type"):
        resolve(o, engine="spark")


def test_rules_match_local_engine_frequency_from_a_spark_frame(spark):
    o = rule_cases()
    rules = IdentityRules(order="frequency")
    local = resolve(o, rules)
    m = resolve(spark.createDataFrame(o), rules, engine="spark")
    assert_same_map(local, m)
    assert same_person(m, ("phone", "P"), ("user_id", "R1"))  # the most frequent owner


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mktlab.datasets import make_world

    return make_world(n_users=1_500, seed=11, out_dir=tmp_path_factory.mktemp("w") / "world")


def test_world_same_people_f1_and_stable_ids(spark, world):
    ids, truth = world.identities, world.identity_truth
    local = resolve(ids)
    m = resolve(ids, engine="spark")
    assert_same_map(local, m)
    assert people_of(m) == people_of(local)

    def f1(imap):
        rec = assign_records(ids, imap).merge(truth, on="record_id", validate="1:1")
        return pairwise_scores(rec["uid"], rec["person_id"])["f1"]

    assert f1(m) == f1(local) >= 0.98
    assert m.report.refused.get("single_valued:user_id", 0) > 0
    assert sum(m.report.blocked.values()) > 0

    # a second run on new observations: same map as the local engine, ids kept
    cut = ids["ts"].quantile(0.7)
    first = resolve(ids[ids["ts"] <= cut])
    later = ids[ids["ts"] > cut]
    again_local = resolve(later, previous=first)
    again = resolve(later, previous=first, engine="spark")
    assert_same_map(again_local, again)
    kept = first.mapping.merge(again.mapping, on=["id_type", "id_value"])
    assert (kept["uid_x"] == kept["uid_y"]).mean() > 0.95
    assert again.next_uid >= first.next_uid
    assert np.isin(first.mapping["uid"].unique(), again.mapping["uid"].unique()).mean() > 0.95


def test_bad_engine_is_refused():
    with pytest.raises(ValidationError, match="engine must be one of"):
        resolve(rule_cases(), engine="dask")


def test_no_jvm_says_what_to_install(monkeypatch, tmp_path):
    from mktlab.spark_session import check_java

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(ConfigError, match=r"needs a JVM.*default-jre-headless.*JAVA_HOME"):
        check_java()
    fake = tmp_path / "old-jdk" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    (fake / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(fake.parent))
    with pytest.raises(ConfigError, match=r"needs Java 17\+ but .* is Java 11"):
        check_java()
