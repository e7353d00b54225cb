"""IdentityMap: lookups, attach_uid, save/load atomicity."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mktlab.config import settings
from mktlab.errors import NotFoundError
from mktlab.identity import IdentityMap, UnresolvedIdentifiersWarning, attach_uid, resolve

from .helpers import obs, record


@pytest.fixture
def imap():
    return resolve(
        obs(
            *record(1, 1, user_id="A", phone="pa", email="a@x.com"),
            *record(2, 2, user_id="B", device="db"),
            *record(3, 3, user_id="C", phone="000000"),
        )
    )


def test_lookups_both_ways(imap):
    a = imap.lookup("phone", "pa")
    assert a == imap.lookup("user_id", "A")
    assert set(imap.identifiers_of(a.global_id)["id_value"]) == {"A", "pa", "a@x.com"}
    assert set(imap.identifiers_of(a.uid)["id_value"]) == {"A", "pa", "a@x.com"}
    uids = imap.mapping["uid"].unique()
    gids = imap.global_ids(uids)
    assert list(imap.uids(gids)) == list(uids)
    with pytest.raises(NotFoundError):
        imap.lookup("phone", "000000")  # blocked
    with pytest.raises(NotFoundError):
        imap.lookup("phone", "nope")
    with pytest.raises(NotFoundError):
        imap.global_ids([99])
    people = imap.people
    assert people["n_identifiers"].sum() == len(imap.mapping)


def test_attach_uid_keeps_every_row_and_counts_unresolved(imap):
    events = pd.DataFrame(
        {
            "id_type": ["phone", "email", "device", "phone", "fax", "user_id"],
            "id_value": ["pa", "A@X.COM", "db", "000000", "x", None],
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    with pytest.warns(UnresolvedIdentifiersWarning, match="3 of 6"):
        out = imap.attach_uid(events)
    a, b = imap.lookup("user_id", "A").uid, imap.lookup("user_id", "B").uid
    assert out["uid"].dtype == "UInt32"
    assert out["uid"].tolist() == [a, a, b, pd.NA, pd.NA, pd.NA]
    assert list(out.index) == list(events.index)
    assert out["amount"].tolist() == events["amount"].tolist()
    assert out.attrs["uid_unresolved"] == 3
    assert "uid" not in events.columns  # input untouched


def test_attach_uid_single_type_table(imap):
    profiles = pd.DataFrame({"user_id": ["B", "A", "Z"], "age": [30, 40, 50]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = attach_uid(profiles, imap, id_type="user_id", id_value_col="user_id", warn=False)
    assert out["uid"].tolist()[:2] == [
        imap.lookup("user_id", "B").uid,
        imap.lookup("user_id", "A").uid,
    ]
    assert out["uid"].isna().tolist() == [False, False, True]


def test_save_load_round_trip_default_path(imap):
    saved = imap.save()
    assert saved.parent == settings().processed_dir / "identity"
    back = IdentityMap.load()
    pd.testing.assert_frame_equal(back.mapping, imap.mapping)
    assert back.next_uid == imap.next_uid
    assert back.rules == imap.rules
    assert back.report.n_people == imap.report.n_people
    assert back.lookup("phone", "pa") == imap.lookup("phone", "pa")
    assert (IdentityMap.current_dir() / "mapping.parquet").is_file()
    # a loaded map continues incrementally
    m2 = resolve(obs(*record(9, 9, user_id="D")), previous=back)
    assert m2.lookup("user_id", "D").uid == imap.next_uid


def test_crash_mid_write_keeps_previous_map(tmp_path, imap):
    imap.save(tmp_path)
    broken = resolve(obs(*record(1, 1, user_id="X")))
    broken.history = pd.DataFrame({"bad": [1j]})  # parquet cannot write complex numbers
    with pytest.raises(Exception):  # noqa: B017 - any writer error
        broken.save(tmp_path)
    back = IdentityMap.load(tmp_path)
    pd.testing.assert_frame_equal(back.mapping, imap.mapping)
    # the orphan is cleaned by the next good save, leaving one version
    imap.save(tmp_path)
    versions = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(versions) == 1


def test_load_missing(tmp_path):
    with pytest.raises(NotFoundError, match="identity resolve"):
        IdentityMap.load(tmp_path / "none")


def test_global_ids_accepts_bitmap(imap):
    from pyroaring import BitMap

    bm = BitMap(np.unique(imap.mapping["uid"].to_numpy()))
    assert len(imap.global_ids(bm)) == len(bm)
