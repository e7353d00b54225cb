"""The synthetic world's people, their identifiers, and the records that show them.

:func:`draw_people` gives a chunk's people their accounts, households, devices, phones,
e-mails and openids; :func:`identities` writes what the sources saw of them, which is
what identity resolution must untangle. Each source adds records of identifiers seen
together: app logins (user_id + device, sometimes an openid), web sessions (device +
e-mail; anonymous people live here), orders (user_id + the phone valid at that time +
maybe an e-mail) and partner feeds (phone + openid). Noise rides along: a hub device, shared family devices, recycled phones, typo'd
e-mails and junk values. The truth table says which person made each record.

The random draws happen in a fixed order (people, then source by source as listed), so
a given chunk seed always gives the same people and records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mktlab.datasets._arrow import decode, digits, flat, take, uuids

HUB_DEVICE = "352099001761481"  # a factory-default IMEI reported by thousands of phones
JUNK_VALUES = np.array(["", "000000", "unknown", "null", "-1", "00000000000", "0000000000000000"])
SOURCES = ("app_login", "web_session", "order", "partner_feed")
ID_TYPES = ("user_id", "phone", "email", "device", "openid")
_P = 1_000_000_007  # prime > any person index: (a*i + b) mod P is a bijection


@dataclass
class People:
    """People of one chunk and their identifiers (arrays indexed by position in the chunk)."""

    pid: np.ndarray  # person ids offset .. offset+n
    has_account: np.ndarray
    user_id: pa.Array  # null without an account
    household: np.ndarray
    n_dev: np.ndarray  # 1-3 devices each
    devices: pa.Array  # flat (n*3): person i's j-th device at 3*i+j
    shares_from: np.ndarray  # person i also uses device 0 of shares_from[i] (-1: no one)
    phone: pa.Array
    phone2: pa.Array  # the donor's new number after recycling (null: none)
    recycle_time: np.ndarray  # when a recycled phone changed hands (-1: never)
    recycled_to: np.ndarray
    recycled_from: np.ndarray
    n_email: np.ndarray
    emails: pa.Array  # flat (n*2)
    n_openid: np.ndarray
    openids: pa.Array  # flat (n*2)


def draw_people(rng: np.random.Generator, offset: int, n: int, t0: int, span: int) -> People:
    """People ``offset .. offset+n``: accounts, households and every identifier they hold."""
    pid = offset + np.arange(n, dtype=np.int64)
    has_account = rng.random(n) < 0.92
    user_id = pc.if_else(
        pa.array(has_account),
        digits((pid * 48271 + 12345) % _P, 10, "U"),
        pa.nulls(n, pa.string()),
    )
    # households of 1-4 consecutive people
    sizes = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.3, 0.15, 0.1])
    starts = np.cumsum(sizes)
    hh = np.searchsorted(starts, np.arange(n), side="right")
    household = (offset + hh).astype(np.int64)
    # devices: 1-3 each
    n_dev = rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15])
    dev_kind = rng.choice(3, size=(n, 3), p=[0.55, 0.3, 0.15])  # imei, oaid, idfa
    imei = digits(
        860_000_000_000_000 + (pid[:, None] * 3 + np.arange(3)).ravel() * 7919 % 10**13, 15
    )
    oaid = uuids(rng, 3 * n)
    idfa = uuids(rng, 3 * n, upper=True)
    kind = dev_kind.ravel()
    # flat (n*3), person i's j-th device at 3*i+j
    devices = pc.if_else(pa.array(kind == 0), imei, pc.if_else(pa.array(kind == 1), oaid, idfa))
    # shared family device: the next household member also uses this person's device 0
    same_hh_next = np.r_[household[1:] == household[:-1], False]
    share = same_hh_next & has_account & np.r_[has_account[1:], False] & (rng.random(n) < 0.15)
    shares_from = np.full(n, -1, dtype=np.int64)  # person i also uses device 0 of shares_from[i]
    shares_from[np.flatnonzero(share) + 1] = np.flatnonzero(share)
    # phones: 85% of account holders; 1% of them are recycled to someone phone-less
    has_phone = has_account & (rng.random(n) < 0.85)
    phone_num = 13_000_000_000 + (pid * 7057 + 991) % 9_000_000_000
    phone = pc.if_else(pa.array(has_phone), digits(phone_num, 11), pa.nulls(n, pa.string()))
    donors = np.flatnonzero(has_phone & (rng.random(n) < 0.012))
    takers_pool = np.flatnonzero(has_account & ~has_phone)
    k = min(len(donors), len(takers_pool))
    donors = donors[:k]
    takers = rng.choice(takers_pool, size=k, replace=False) if k else takers_pool[:0]
    recycle_time = np.full(n, -1, dtype=np.int64)
    t_r = t0 + rng.integers(int(0.3 * span), int(0.7 * span), size=k)
    recycle_time[donors] = t_r
    recycle_time[takers] = t_r
    recycled_to = np.full(n, -1, dtype=np.int64)
    recycled_to[donors] = takers
    recycled_from = np.full(n, -1, dtype=np.int64)
    recycled_from[takers] = donors
    # donors get a new number (70%) after handing the old one over
    new_phone = rng.random(n) < 0.7
    phone2 = pc.if_else(
        pa.array((recycled_to >= 0) & new_phone),
        digits(13_000_000_000 + (pid * 104729 + 7) % 9_000_000_000, 11),
        pa.nulls(n, pa.string()),
    )
    # emails 0-2; openids 0-2 (account holders only)
    n_email = rng.choice([0, 1, 2], size=n, p=[0.25, 0.55, 0.2])
    domains = np.array(["qq.com", "163.com", "gmail.com", "outlook.com", "126.com"])
    dom = domains[rng.integers(0, len(domains), size=2 * n)]
    local = digits((np.repeat(pid, 2) * 2 + np.tile([0, 1], n)) * 2654435761 % 10**12, 12, "u")
    emails = pc.binary_join_element_wise(local, pa.array(dom), "@")
    n_openid = np.where(has_account, rng.choice([0, 1, 2], size=n, p=[0.3, 0.5, 0.2]), 0)
    openids = pc.binary_join_element_wise(
        "o",
        pc.utf8_slice_codeunits(pc.replace_substring(uuids(rng, 2 * n), "-", ""), 0, 27),
        "",
    )
    return People(
        pid, has_account, user_id, household, n_dev, devices, shares_from, phone, phone2,
        recycle_time, recycled_to, recycled_from, n_email, emails, n_openid, openids,
    )  # fmt: skip


class _Records:
    """Identity rows collected source by source, with the person behind each record."""

    def __init__(self, ids: People, rng: np.random.Generator, t0: int, span: int, offset: int):
        self.ids, self.rng, self.t0, self.span = ids, rng, t0, span
        record_offset = offset
        self.record_offset = record_offset
        self.next_rec = record_offset
        self.cols: dict[str, list] = {"rec": [], "ts": [], "source": [], "id_type": [], "val": []}
        self.truth_rec: list[np.ndarray] = []
        self.truth_pid: list[np.ndarray] = []

    def records(self, person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New record ids (one per entry of ``person``) and their random times."""
        rec = self.next_rec + np.arange(len(person), dtype=np.int64)
        self.next_rec += len(person)
        ts = self.random_ts(len(person))
        self.truth_rec.append(rec)
        self.truth_pid.append(self.ids.pid[person])
        return rec, ts

    def random_ts(self, k: int) -> np.ndarray:
        """``k`` uniform epoch-second times inside the world's window."""
        return self.t0 + self.rng.integers(0, self.span, size=k)

    def add(
        self,
        rec: np.ndarray,
        ts: np.ndarray,
        source: str,
        id_type: str,
        values: pa.Array,
        mask: np.ndarray | None = None,
    ) -> None:
        """One identifier per record where ``values`` is not null (and ``mask`` holds)."""
        valid = ~np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False))
        if mask is not None:
            valid &= mask
        idx = np.flatnonzero(valid)
        self.cols["rec"].append(rec[idx])
        self.cols["ts"].append(ts[idx])
        self.cols["source"].append(np.full(len(idx), SOURCES.index(source), dtype=np.int8))
        self.cols["id_type"].append(np.full(len(idx), ID_TYPES.index(id_type), dtype=np.int8))
        self.cols["val"].append(take(values, idx))

    def add_junk(self, rec: np.ndarray, ts: np.ndarray, id_type: np.ndarray, values: pa.Array):
        """Junk rows on existing records; their ts and source are the record's (see tables)."""
        self.cols["rec"].append(rec)
        self.cols["ts"].append(ts)
        self.cols["source"].append(np.zeros(len(rec), dtype=np.int8))
        self.cols["id_type"].append(id_type)
        self.cols["val"].append(values)

    def tables(self) -> tuple[pa.Table, pa.Table, int]:
        """``(identities, identity truth, next record id)``; rows sorted by record."""
        cols, off = self.cols, self.record_offset
        rec = np.concatenate(cols["rec"])
        truth = pa.table(
            {
                "record_id": pa.array(np.concatenate(self.truth_rec)),
                "person_id": pa.array(np.concatenate(self.truth_pid)),
            }
        )
        # align ts/source of every row with its record (junk rows, added last, included)
        rec_ts = np.empty(self.next_rec - off, dtype=np.int64)
        rec_src = np.empty(self.next_rec - off, dtype=np.int8)
        for r, t, s in zip(cols["rec"][:-1], cols["ts"][:-1], cols["source"][:-1], strict=True):
            rec_ts[r - off] = t
            rec_src[r - off] = s
        ts_all = rec_ts[rec - off]
        src_all = rec_src[rec - off]
        order = np.lexsort((rec,))
        table = pa.table(
            {
                "record_id": pa.array(rec[order]),
                "ts": pa.array((ts_all[order] * 1_000_000).astype("datetime64[us]")),
                "source": decode(src_all[order], SOURCES),
                "id_type": decode(np.concatenate(cols["id_type"])[order], ID_TYPES),
                "id_value": pa.concat_arrays([flat(a).cast(pa.string()) for a in cols["val"]]).take(
                    pa.array(order)
                ),
            }
        )
        return table, truth, self.next_rec


def _device_of(ch: People, rng: np.random.Generator, person: np.ndarray) -> pa.Array:
    """One of each person's devices, at random."""
    j = (rng.random(len(person)) * ch.n_dev[person]).astype(np.int64)
    return take(ch.devices, 3 * person + j)


def _phone_at(ch: People, p: np.ndarray, ts: np.ndarray) -> pa.Array:
    """The phone each person held at ``ts``: recycled numbers change hands at a known time."""
    rt = ch.recycle_time[p]
    phone = take(ch.phone, p)
    phone = pc.if_else(pa.array((ch.recycled_to[p] >= 0) & (ts >= rt)), take(ch.phone2, p), phone)
    return pc.if_else(
        pa.array((ch.recycled_from[p] >= 0) & (ts >= rt)),
        take(ch.phone, np.maximum(ch.recycled_from[p], 0)),
        phone,
    )


def _app_logins(ch: People, out: _Records, acct: np.ndarray) -> None:
    """user_id + one device (+ an openid sometimes); every device and openid seen once."""
    rng = out.rng
    p = np.repeat(acct, 1 + rng.poisson(3, size=len(acct)))
    rec, ts = out.records(p)
    out.add(rec, ts, "app_login", "user_id", take(ch.user_id, p))
    dev = _device_of(ch, rng, p)
    # the person who shares a family member's device logs in on it half of the time
    borrow = (ch.shares_from[p] >= 0) & (rng.random(len(p)) < 0.5)
    dev = pc.if_else(pa.array(borrow), take(ch.devices, 3 * np.maximum(ch.shares_from[p], 0)), dev)
    hub = rng.random(len(p)) < 0.002
    dev = pc.if_else(pa.array(hub), pa.scalar(HUB_DEVICE), dev)
    out.add(rec, ts, "app_login", "device", dev)
    has_oid = ch.n_openid[p] > 0
    oid = take(
        ch.openids, 2 * p + (rng.random(len(p)) * np.maximum(ch.n_openid[p], 1)).astype(np.int64)
    )
    out.add(rec, ts, "app_login", "openid", oid, has_oid & (rng.random(len(p)) < 0.6))
    # every openid and every device is seen at least once with the account
    for j in range(2):
        who = acct[ch.n_openid[acct] > j]
        rec, ts = out.records(who)
        out.add(rec, ts, "app_login", "user_id", take(ch.user_id, who))
        out.add(rec, ts, "app_login", "openid", take(ch.openids, 2 * who + j))
    for j in range(3):
        who = acct[ch.n_dev[acct] > j]
        rec, ts = out.records(who)
        out.add(rec, ts, "app_login", "user_id", take(ch.user_id, who))
        out.add(rec, ts, "app_login", "device", take(ch.devices, 3 * who + j))


def _web_sessions(ch: People, out: _Records) -> None:
    """A device + an e-mail (typo'd now and then); anonymous people live here."""
    rng = out.rng
    p = np.repeat(
        np.arange(len(ch.pid)), rng.poisson(np.where(ch.has_account, 1.5, 4.0)) + (~ch.has_account)
    )
    rec, ts = out.records(p)
    out.add(rec, ts, "web_session", "device", _device_of(ch, rng, p))
    has_mail = ch.n_email[p] > 0
    mail = take(
        ch.emails, 2 * p + (rng.random(len(p)) * np.maximum(ch.n_email[p], 1)).astype(np.int64)
    )
    typo = rng.random(len(p)) < 0.01
    mail = pc.if_else(pa.array(typo), pc.replace_substring(mail, "@", "@@"), mail)
    out.add(rec, ts, "web_session", "email", mail, has_mail & (rng.random(len(p)) < 0.7))


def _orders(ch: People, out: _Records, acct: np.ndarray) -> None:
    """user_id + the phone valid at that time + maybe an e-mail."""
    rng = out.rng
    p = np.repeat(acct, rng.poisson(1.5, size=len(acct)) + (ch.recycle_time[acct] >= 0) * 2)
    rec, ts = out.records(p)
    out.add(rec, ts, "order", "user_id", take(ch.user_id, p))
    out.add(rec, ts, "order", "phone", _phone_at(ch, p, ts))
    mail_ok = (ch.n_email[p] > 0) & (rng.random(len(p)) < 0.5)
    out.add(rec, ts, "order", "email", take(ch.emails, 2 * p), mail_ok)


def _partner_feeds(ch: People, out: _Records, acct: np.ndarray) -> None:
    """Phone + openid, as of the record's time."""
    p = np.repeat(acct, out.rng.poisson(0.4, size=len(acct)))
    p = p[ch.n_openid[p] > 0]
    rec, ts = out.records(p)
    out.add(rec, ts, "partner_feed", "phone", _phone_at(ch, p, ts))
    out.add(rec, ts, "partner_feed", "openid", take(ch.openids, 2 * p))


def _junk(ch: People, out: _Records) -> None:
    """Junk identifiers riding along on 3% of records."""
    rng = out.rng
    all_rec = np.concatenate(out.truth_rec)
    junk_rec = all_rec[rng.random(len(all_rec)) < 0.03]
    jt = out.random_ts(len(junk_rec))
    jv = pa.array(JUNK_VALUES[rng.integers(0, len(JUNK_VALUES), size=len(junk_rec))])
    jtype = np.where(
        rng.random(len(junk_rec)) < 0.6, ID_TYPES.index("device"), ID_TYPES.index("phone")
    ).astype(np.int8)
    out.add_junk(junk_rec, jt, jtype, jv)


def identities(
    people: People, rng: np.random.Generator, t0: int, span: int, record_offset: int
) -> tuple[pa.Table, pa.Table, int]:
    """Identity records of ``people``, numbered from ``record_offset``, times in ``t0 + [0, span)``.

    ``rng`` is the chunk's generator: its draws continue where :func:`draw_people` left off.

    Returns
    -------
    (identities, identity_truth, next_record_offset)
        ``identities`` has ``record_id, ts, source, id_type, id_value`` sorted by record;
        ``identity_truth`` maps ``record_id`` to ``person_id``.
    """
    out = _Records(people, rng, t0, span, record_offset)
    acct = np.flatnonzero(people.has_account)
    _app_logins(people, out, acct)
    _web_sessions(people, out)
    _orders(people, out, acct)
    _partner_feeds(people, out, acct)
    _junk(people, out)
    return out.tables()
