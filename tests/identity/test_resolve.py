"""Each rule on a hand-made graph whose right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.errors import DataError, SchemaError
from mktlab.identity import IdentityRules, IdTypeRule, resolve

from .helpers import obs, people_of, record, same_person


def test_record_links_and_components():
    o = obs(
        *record(1, 1, user_id="A", device="d1"),
        *record(2, 2, device="d1", email="a@x.com"),
        *record(3, 3, user_id="B", phone="p2"),
        *record(4, 4, email="lonely@x.com"),
    )
    m = resolve(o)
    assert people_of(m) == {
        frozenset({("user_id", "A"), ("device", "d1"), ("email", "a@x.com")}),
        frozenset({("user_id", "B"), ("phone", "p2")}),
        frozenset({("email", "lonely@x.com")}),
    }
    assert m.mapping["uid"].dtype == np.uint32
    assert list(m.mapping.columns) == ["id_type", "id_value", "global_id", "uid"]
    assert sorted(m.mapping["uid"].unique().tolist()) == [0, 1, 2]
    assert m.report.n_people == 3
    assert m.next_uid == 3
    assert len(m.audit) == 0


def recycled_phone():
    # phone P belongs to A until day 10 (3 records), then is recycled to B (1 record)
    return obs(
        *record(1, 1, user_id="A", phone="P"),
        *record(2, 3, user_id="A", phone="P"),
        *record(3, 5, user_id="A", phone="P", email="a@x.com"),
        *record(4, 20, user_id="B", phone="P"),
    )


def test_recency_gives_recycled_phone_to_latest_owner():
    m = resolve(recycled_phone(), IdentityRules(order="recency"))
    assert same_person(m, ("phone", "P"), ("user_id", "B"))
    assert not same_person(m, ("user_id", "A"), ("user_id", "B"))
    assert same_person(m, ("user_id", "A"), ("email", "a@x.com"))
    refused = m.audit[m.audit["reason"] == "single_valued:user_id"]
    assert len(refused) == 1
    row = refused.iloc[0]
    assert {(row.id_type_a, row.id_value_a), (row.id_type_b, row.id_value_b)} == {
        ("user_id", "A"),
        ("phone", "P"),
    }
    assert row.n_records == 3
    assert m.report.refused == {"single_valued:user_id": 1}


def test_frequency_gives_recycled_phone_to_most_frequent_owner():
    m = resolve(recycled_phone(), IdentityRules(order="frequency"))
    assert same_person(m, ("phone", "P"), ("user_id", "A"))
    assert m.lookup("user_id", "B").uid != m.lookup("user_id", "A").uid
    assert m.audit["reason"].tolist() == ["single_valued:user_id"]


def test_single_valued_phone_conflict():
    # one user_id seen with two phones: the later phone stays, the older is refused
    o = obs(*record(1, 1, user_id="A", phone="p1"), *record(2, 9, user_id="A", phone="p2"))
    m = resolve(o)
    assert same_person(m, ("user_id", "A"), ("phone", "p2"))
    assert not same_person(m, ("user_id", "A"), ("phone", "p1"))
    assert m.audit["reason"].tolist() == ["single_valued:phone"]


def test_many_valued_limit_keeps_most_recent_values():
    rows = [r for i in range(5) for r in record(i, i, user_id="A", email=f"e{i}@x.com")]
    m = resolve(obs(*rows))  # email limit 3: the three latest stay with A
    ids = set(m.identifiers_of(m.lookup("user_id", "A").global_id)["id_value"])
    assert ids == {"A", "e2@x.com", "e3@x.com", "e4@x.com"}
    assert m.report.refused == {"limit:email": 2}
    assert m.report.n_people == 3


def test_shared_family_device_keeps_two_people():
    o = obs(
        *record(1, 1, user_id="mum", device="tablet"),
        *record(2, 2, user_id="kid", device="tablet"),
        *record(3, 3, user_id="mum", phone="pm"),
    )
    m = resolve(o)
    assert not same_person(m, ("user_id", "mum"), ("user_id", "kid"))
    assert same_person(m, ("device", "tablet"), ("user_id", "kid"))  # the latest user


def test_no_person_holds_two_single_valued_values_on_a_chain():
    # A - p1 - x - p2 - B: a chain through many-valued ids still may not join A and B
    o = obs(
        *record(1, 1, user_id="A", email="x@x.com"),
        *record(2, 2, email="x@x.com", device="d"),
        *record(3, 3, device="d", user_id="B"),
    )
    m = resolve(o)
    per = m.mapping.groupby("uid")["id_type"].apply(lambda s: (s == "user_id").sum())
    assert per.max() == 1


def test_blocklist_values_and_regex_never_link():
    o = obs(
        *record(1, 1, user_id="A", phone="000000"),
        *record(2, 1, user_id="B", phone="000000"),
        *record(3, 1, user_id="C", device="unknown"),
        *record(4, 1, user_id="D", device="UNKNOWN"),
        *record(5, 1, user_id="E", email="  "),
        *record(6, 1, user_id="F", email=""),
        *record(7, 1, user_id="G", openid="-1"),
        *record(8, 1, user_id="H", openid="NULL"),
    )
    m = resolve(o)
    assert m.report.n_people == 8
    assert set(m.mapping["id_type"]) == {"user_id"}
    assert m.report.blocked == {"phone": 2, "email": 2, "openid": 2, "device": 2}
    ex = m.excluded
    assert set(ex["reason"]) == {"blocked"}
    assert ("phone", "000000") in set(zip(ex["id_type"], ex["id_value"]))


def test_custom_blocklist_regex():
    rules = IdentityRules(block_values=(), block_regex=(r"^test",))
    o = obs(
        *record(1, 1, user_id="A", email="test@x.com"),
        *record(2, 1, user_id="B", email="test@x.com"),
    )
    m = resolve(o, rules)
    assert m.report.n_people == 2
    assert m.report.blocked == {"email": 2}


def hub_world(n_users=60):
    rows = []
    for i in range(n_users):
        rows += record(2 * i, i % 30, email=f"u{i}@x.com", device="HUB")
        rows += record(2 * i + 1, i % 30, email=f"u{i}@x.com", openid=f"o{i}")
    return obs(*rows)


def test_hub_identifier_is_not_used_for_linking():
    roomy = tuple(
        IdTypeRule(n, p, max_per_person=10_000)
        for n, p in [("email", 1), ("openid", 2), ("device", 3)]
    )
    m = resolve(hub_world(), IdentityRules(types=roomy, hub_threshold=50))
    assert m.report.n_people == 60
    assert m.report.hubs == {"device": 1}
    assert ("device", "HUB") not in set(zip(m.mapping["id_type"], m.mapping["id_value"]))
    assert (m.excluded["reason"] == "hub").sum() == 1
    assert (m.audit["reason"] == "hub").sum() == 60
    assert same_person(m, ("email", "u3@x.com"), ("openid", "o3"))
    # without hub detection the hub glues everyone together
    m2 = resolve(hub_world(), IdentityRules(types=roomy, hub_threshold=None))
    assert m2.report.n_people == 1


def test_hub_anchor_is_relinked_around():
    # records whose strongest identifier is the hub still link their other identifiers
    rules = IdentityRules(
        types=(
            IdTypeRule("user_id", 1),
            IdTypeRule("device", 2, 10_000),
            IdTypeRule("email", 3, 10_000),
        ),
        hub_threshold=3,
    )
    rows = [r for i in range(5) for r in record(i, 1, user_id=f"u{i}", device="HUB")]
    rows += [(99, 1, "device", "HUB"), (99, 1, "email", "p"), (99, 1, "email", "q")]
    m = resolve(obs(*rows), rules)
    assert m.report.hubs == {"device": 1}
    assert same_person(m, ("email", "p"), ("email", "q"))
    assert not same_person(m, ("user_id", "u0"), ("user_id", "u1"))


def test_normalisation_strips_and_lowercases_email():
    o = obs(
        *record(1, 1, user_id="A", email=" Ann@X.com "),
        *record(2, 2, email="ann@x.com", device="d"),
    )
    m = resolve(o)
    assert same_person(m, ("user_id", "A"), ("device", "d"))
    assert m.lookup("email", "ANN@x.COM").uid == m.lookup("user_id", "A").uid


def test_string_timestamps_and_string_record_ids():
    o = obs(*record(1, 1, user_id="A", phone="P"), *record(2, 5, user_id="B", phone="P"))
    o["ts"] = o["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    o["record_id"] = "r" + o["record_id"].astype(str)
    m = resolve(o)
    assert same_person(m, ("phone", "P"), ("user_id", "B"))


def test_empty_input():
    m = resolve(obs())
    assert len(m.mapping) == 0
    assert m.report.n_people == 0
    assert m.next_uid == 0


# ----------------------------------------------------------------- bad input
def test_missing_columns_named():
    with pytest.raises(SchemaError, match="id_value"):
        resolve(
            pd.DataFrame(
                {"record_id": [1], "ts": [pd.Timestamp("2026-01-01")], "id_type": ["email"]}
            )
        )


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("id_value", None, "observations.id_value: 1 row"),
        ("id_type", "fax", "observations.id_type: 1 row.*not a known type"),
        ("id_type", None, "observations.id_type: 1 row.*null"),
        ("ts", "not a date", "observations.ts: 1 row"),
        ("record_id", None, "observations.record_id"),
    ],
)
def test_bad_rows_raise_naming_field_with_sample(column, value, match):
    o = obs(*record(1, 1, user_id="A", phone="P"), *record(2, 2, user_id="B"))
    o = o.astype({"ts": object, "record_id": object})
    o.loc[1, column] = value
    with pytest.raises(DataError, match=match) as info:
        resolve(o)
    assert "'record_id'" in str(info.value)
    assert "e.g." in str(info.value)


def test_quarantine_sets_bad_rows_aside_and_goes_on():
    o = obs(*record(1, 1, user_id="A", phone="P"), *record(2, 2, user_id="B", email="b@x.com"))
    o = o.astype({"ts": object})
    o.loc[1, "id_value"] = None
    o.loc[2, "id_type"] = "fax"
    o.loc[3, "ts"] = "yesterday-ish"
    m = resolve(o, errors="quarantine")
    assert len(m.quarantine) == 3
    assert sorted(m.quarantine["reason"].str.split().str[0]) == ["id_type", "id_value", "ts"]
    assert m.report.n_quarantined == 3
    assert set(m.mapping["id_value"]) == {"A"}  # every other row was bad


def test_bad_errors_argument():
    with pytest.raises(ValueError, match="errors"):
        resolve(obs(), errors="ignore")


def test_numeric_ids_and_case_blind_types():
    o = pd.DataFrame(
        {
            "record_id": [1, 1, 2, 2],
            "ts": pd.to_datetime(
                ["2026-01-01", "2026-01-01", "2026-01-02", "2026-01-02"], utc=True
            ),
            "id_type": ["user_id", " Phone", "USER_ID", "phone"],
            "id_value": [7.0, 13800000000.0, 8.0, np.nan],
        }
    )
    m = resolve(o, errors="quarantine")
    assert len(m.quarantine) == 1
    assert same_person(m, ("user_id", "7"), ("phone", "13800000000"))
    assert m.lookup("PHONE", 13800000000).uid == m.lookup("user_id", 7).uid


def test_identifier_repeated_in_a_record_counts_once():
    o = obs(*record(1, 1, user_id="A", phone="P"), (1, 1, "phone", "P"), (1, 1, "phone", " P "))
    m = resolve(o)
    assert m.edges["n_records"].tolist() == [1]


def test_heavy_user_with_many_devices_is_not_a_hub():
    rows = [r for i in range(80) for r in record(i, i, user_id="heavy", device=f"cookie{i}")]
    m = resolve(obs(*rows))
    assert m.report.hubs == {}
    assert m.lookup("user_id", "heavy")  # kept, with the 5 latest devices
    assert len(m.identifiers_of(m.lookup("user_id", "heavy").uid)) == 6
