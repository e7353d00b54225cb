"""The synthetic marketing world: realistic raw data with its hidden truth kept aside.

``make_world(n_users, seed)`` writes Parquet tables under ``data/raw/world/``. Every
later capability can be scored against the truth tables: identity resolution against
``identity_truth``, attribution against ``channel_truth``, uplift and the sandbox
against ``campaign_truth`` (every user's potential outcomes).

Generation is vectorised (numpy + pyarrow) and runs in fixed-size chunks of people, so
memory is bounded whatever ``n_users`` is and a given ``(n_users, seed)`` always gives
the same bytes-for-bytes world. People never interact across chunks (households, shared
devices and recycled phones stay inside a chunk), which keeps chunks independent.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mktlab.config import settings
from mktlab.datasets._arrow import decode, take
from mktlab.datasets.identities import ID_TYPES, draw_people, identities
from mktlab.errors import DataError, ValidationError

WORLD_VERSION = 1
CHUNK = 250_000
MAX_USERS = 50_000_000
START = datetime(2026, 8, 1)
DAYS = 90
CITIES = np.array(["SH", "BJ", "GZ", "SZ", "CD", "HZ", "WH", "XA", "NJ", "CQ"])
CITY_P = np.array([0.16, 0.15, 0.12, 0.11, 0.09, 0.09, 0.08, 0.07, 0.07, 0.06])
TIERS = np.array(["bronze", "silver", "gold", "platinum", "diamond"])
CATEGORIES = np.array(["apparel", "beauty", "electronics", "food", "home", "sports"])
EVENT_CHANNELS = np.array(["app", "web", "mini_program"])
CHANNELS = np.array(["search", "social", "display", "email", "push", "sms", "affiliate", "direct"])
# How often each channel touches a user, and its per-touch conversion effect (the truth
# attribution methods are scored against).
CHANNEL_FREQ = np.array([0.20, 0.18, 0.17, 0.12, 0.10, 0.06, 0.07, 0.10])
CHANNEL_EFFECT = np.array([0.060, 0.025, 0.008, 0.030, 0.015, 0.010, 0.040, 0.080])
JOURNEY_BASE = 0.01
QUADRANTS = np.array(["persuadable", "sure_thing", "lost_cause", "sleeping_dog"])
TABLES = (
    "identities", "identity_truth", "people", "profiles", "events", "event_truth",
    "touches", "conversions", "channel_truth", "campaign_log", "campaign_truth",
)  # fmt: skip


@dataclass
class World:
    """A generated world on disk; each table loads lazily as a pandas DataFrame.

    Attributes are named after the tables in :data:`TABLES` (``world.identities``,
    ``world.campaign_truth``, ...). ``meta`` holds the generation parameters.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._cache: dict[str, pd.DataFrame] = {}
        meta = self.path / "meta.json"
        if not meta.is_file():
            raise DataError(
                f"{self.path} holds no generated world (no meta.json); run "
                "`mktlab world generate --users N --seed S` first"
            )
        self.meta = json.loads(meta.read_text())

    def table_path(self, name: str) -> Path:
        if name not in TABLES:
            raise ValidationError(f"unknown world table {name!r}; tables: {', '.join(TABLES)}")
        return self.path / f"{name}.parquet"

    def table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read one table (optionally a subset of its columns)."""
        if columns is not None:
            return pd.read_parquet(self.table_path(name), columns=columns)
        if name not in self._cache:
            p = self.table_path(name)
            if not p.is_file():
                raise DataError(f"{p} is missing; regenerate the world")
            self._cache[name] = pd.read_parquet(p)
        return self._cache[name]

    def __getattr__(self, name: str) -> pd.DataFrame:
        if name in TABLES:
            return self.table(name)
        raise AttributeError(name)

    @property
    def as_of(self) -> pd.Timestamp:
        """End of the observed period (the "today" of the world)."""
        return pd.Timestamp(self.meta["end"])

    def summary(self) -> pd.DataFrame:
        """Rows and size on disk of each table."""
        rows = []
        for name in TABLES:
            p = self.table_path(name)
            md = pq.ParquetFile(p).metadata
            rows.append(
                {
                    "table": name,
                    "rows": md.num_rows,
                    "columns": md.num_columns,
                    "mb": p.stat().st_size / 1e6,
                }
            )
        return pd.DataFrame(rows)


def _check_args(n_users: object, seed: object) -> tuple[int, int]:
    if isinstance(n_users, bool) or not isinstance(n_users, int | np.integer):
        raise ValidationError(f"n_users must be an integer, got {n_users!r}")
    if not 100 <= int(n_users) <= MAX_USERS:
        raise ValidationError(f"n_users must be between 100 and {MAX_USERS:,}, got {n_users:,}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValidationError(f"seed must be a non-negative integer, got {seed!r}")
    if int(seed) < 0:
        raise ValidationError(f"seed must be a non-negative integer, got {seed}")
    return int(n_users), int(seed)


# ----------------------------------------------------------------------------- chunks
class _Chunk:
    """People ``offset .. offset+n`` and everything they generate."""

    def __init__(self, n: int, offset: int, seed: int, chunk_index: int) -> None:
        self.n, self.offset = n, offset
        self.rng = np.random.default_rng([seed, chunk_index, WORLD_VERSION])
        self.t0 = int(START.timestamp())
        self.span = DAYS * 86400

    # people and their identifiers: mktlab.datasets.identities ------------------------
    def people(self) -> None:
        self.ids = draw_people(self.rng, self.offset, self.n, self.t0, self.span)

    # profiles, events ---------------------------------------------------------------
    def events_and_profiles(self, event_offset: int) -> tuple[pa.Table, pa.Table, pa.Table, int]:
        rng, n = self.rng, self.n
        activity = rng.gamma(0.8, 1.0, size=n) * np.where(self.ids.has_account, 1.0, 0.4)
        n_view = rng.poisson(activity * 6)
        n_cart = rng.binomial(n_view, 0.25)
        n_order = rng.binomial(n_cart, 0.35) + (rng.random(n) < 0.15 * self.ids.has_account)
        kinds = (("view", n_view), ("cart", n_cart), ("order", n_order))
        person = np.concatenate([np.repeat(np.arange(n), k) for _, k in kinds])
        ev_code = np.concatenate(
            [np.full(int(k.sum()), i, dtype=np.int8) for i, (_, k) in enumerate(kinds)]
        )
        is_order = ev_code == 2
        m = len(person)
        eid = event_offset + np.arange(m, dtype=np.int64)
        # recent activity is denser for active people: skew timestamps toward the end
        ts = self.t0 + (self.span * rng.power(1.0 + activity[person] * 0.5)).astype(np.int64)
        ch = rng.choice(3, size=m, p=[0.6, 0.25, 0.15])
        # the identifier the event arrives with depends on the channel
        dev_j = (rng.random(m) * self.ids.n_dev[person]).astype(np.int64)
        device = take(self.ids.devices, 3 * person + dev_j)
        use_uid = (ch == 0) & self.ids.has_account[person] & (rng.random(m) < 0.7)
        use_oid = (ch == 2) & (self.ids.n_openid[person] > 0)
        id_code = np.where(
            use_uid,
            ID_TYPES.index("user_id"),
            np.where(use_oid, ID_TYPES.index("openid"), ID_TYPES.index("device")),
        )
        val = pc.if_else(
            pa.array(use_uid),
            take(self.ids.user_id, person),
            pc.if_else(pa.array(use_oid), take(self.ids.openids, 2 * person), device),
        )
        amount = np.where(is_order, np.round(rng.lognormal(4.6, 0.7, size=m), 2), 0.0)
        cat = CATEGORIES[rng.integers(0, len(CATEGORIES), size=m)]
        events = pa.table(
            {
                "event_id": pa.array(eid),
                "ts": pa.array((ts * 1_000_000).astype("datetime64[us]")),
                "id_type": decode(id_code.astype(np.int8), ID_TYPES),
                "id_value": val,
                "event": decode(ev_code, ("view", "cart", "order")),
                "channel": pa.array(EVENT_CHANNELS[ch]),
                "category": pa.array(cat),
                "amount": pa.array(amount),
                "campaign_id": pa.nulls(m, pa.string()),
            }
        )
        truth = pa.table({"event_id": pa.array(eid), "person_id": pa.array(self.ids.pid[person])})
        # RFM from the orders just generated, so profiles agree with events
        end = self.t0 + self.span
        last = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last, person[is_order], ts[is_order])
        self.frequency = np.bincount(person[is_order], minlength=n)
        self.monetary = np.round(
            np.bincount(person[is_order], weights=amount[is_order], minlength=n), 2
        )
        self.recency = np.where(last >= 0, (end - last) // 86400, 365)
        self.age = np.clip(rng.normal(34, 10, size=n), 18, 75).astype(np.int64)
        self.gender = np.where(rng.random(n) < 0.55, "F", "M")
        self.city = CITIES[rng.choice(len(CITIES), size=n, p=CITY_P)]
        spend_rank = np.log1p(self.monetary) + rng.normal(0, 0.8, size=n)
        self.tier_level = np.clip(np.digitize(spend_rank, [1.0, 4.0, 5.2, 6.2]) + 1, 1, 5)
        signup = end - 86400 * rng.integers(DAYS, 5 * 365, size=n)
        acct = np.flatnonzero(self.ids.has_account)
        band = pd.cut(
            self.age, [0, 24, 34, 44, 54, 200], labels=["18-24", "25-34", "35-44", "45-54", "55+"]
        ).astype(str)
        profiles = pa.table(
            {
                "user_id": take(self.ids.user_id, acct),
                "age": pa.array(self.age[acct]),
                "age_band": pa.array(np.asarray(band)[acct], type=pa.string()),
                "gender": pa.array(self.gender[acct]),
                "city": pa.array(self.city[acct]),
                "tier": pa.array(TIERS[self.tier_level[acct] - 1]),
                "tier_level": pa.array(self.tier_level[acct]),
                "signup_date": pa.array((signup[acct] // 86400).astype("datetime64[D]")),
                "recency_days": pa.array(self.recency[acct]),
                "frequency_90d": pa.array(self.frequency[acct]),
                "monetary_90d": pa.array(self.monetary[acct]),
            }
        )
        return events, truth, profiles, event_offset + m

    # journeys -----------------------------------------------------------------------
    def journeys(
        self, journey_offset: int
    ) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray, int]:
        rng = self.rng
        who = np.flatnonzero(self.ids.has_account & (self.rng.random(self.n) < 0.5))
        k = len(who)
        jid = journey_offset + np.arange(k, dtype=np.int64)
        n_touch = 1 + rng.poisson(1.8, size=k)
        j_of = np.repeat(np.arange(k), n_touch)
        ch = rng.choice(len(CHANNELS), size=len(j_of), p=CHANNEL_FREQ)
        # P(convert) = 1 - (1-base) * prod over touches (1 - effect): each touch is an
        # independent chance to convince; the truth below removes one channel's touches.
        log_stay = np.bincount(j_of, weights=np.log1p(-CHANNEL_EFFECT[ch]), minlength=k)
        p_conv = 1 - (1 - JOURNEY_BASE) * np.exp(log_stay)
        lost = np.zeros(len(CHANNELS))
        for c in range(len(CHANNELS)):
            log_wo = np.bincount(
                j_of, weights=np.where(ch == c, 0.0, np.log1p(-CHANNEL_EFFECT[ch])), minlength=k
            )
            lost[c] = (p_conv - (1 - (1 - JOURNEY_BASE) * np.exp(log_wo))).sum()
        converted = rng.random(k) < p_conv
        value = np.where(converted, np.round(rng.lognormal(4.8, 0.6, size=k), 2), 0.0)
        end_ts = self.t0 + rng.integers(int(0.4 * self.span), self.span, size=k)
        # touches precede the journey's end, in time order
        back = rng.integers(60, 30 * 86400, size=len(j_of))
        order = np.lexsort((-back, j_of))  # j_of is sorted: earliest touch first per journey
        t_ts = end_ts[j_of] - back[order]
        touches = pa.table(
            {
                "journey_id": pa.array(jid[j_of]),
                "user_id": take(self.ids.user_id, who[j_of]),
                "ts": pa.array((t_ts * 1_000_000).astype("datetime64[us]")),
                "channel": pa.array(CHANNELS[ch]),
            }
        )
        conv = pa.table(
            {
                "journey_id": pa.array(jid),
                "user_id": take(self.ids.user_id, who),
                "converted": pa.array(converted),
                "value": pa.array(value),
                "ts": pa.array((end_ts * 1_000_000).astype("datetime64[us]")),
            }
        )
        return touches, conv, lost, p_conv, journey_offset + k

    # campaigns ----------------------------------------------------------------------
    def campaigns(self, event_offset: int) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table, int]:
        rng = self.rng
        acct = np.flatnonzero(self.ids.has_account)
        m = len(acct)
        fz = (np.log1p(self.frequency[acct]) - 0.8) / 0.7
        rz = (np.minimum(self.recency[acct], 120) - 45) / 35
        az = (self.age[acct] - 34) / 10
        tz = (self.tier_level[acct] - 2.5) / 1.2
        logits = np.stack(
            [
                1.3 - 0.8 * np.abs(fz - 0.3) - 0.5 * az,  # persuadable: middling, younger
                1.0 + 1.6 * fz - 0.6 * rz,  # sure thing: frequent, recent
                -1.0 - 1.1 * fz + 0.5 * rz,  # lost cause: rare, lapsed
                0.0 + 1.0 * tz + 0.6 * az,  # sleeping dog: high tier, older
            ],
            axis=1,
        )
        g = rng.gumbel(size=logits.shape)
        q = np.argmax(logits + g, axis=1)
        u = rng.random(m)
        v = rng.random(m)
        p0 = np.select(
            [q == 0, q == 1, q == 2, q == 3],
            [0.02 + 0.08 * u, 0.45 + 0.25 * u, 0.05 * u, 0.20 + 0.20 * u],
        )
        lift = np.select(
            [q == 0, q == 1, q == 2, q == 3],
            [0.15 + 0.2 * v, -0.02 + 0.05 * v, 0.02 * v, -(0.10 + 0.10 * v)],
        )
        p1 = np.clip(p0 + lift, 0, 1)
        rows = []
        truths = []
        redeem_who: list[np.ndarray] = []
        redeem_ts: list[np.ndarray] = []
        redeem_amt: list[np.ndarray] = []
        redeem_cid: list[np.ndarray] = []
        for cid, policy in (("C001", "random"), ("C002", "targeted")):
            if policy == "random":
                prop = np.full(m, 0.5)
            else:
                # a marketer's rule of thumb: target frequent, recent buyers
                prop = np.clip(1 / (1 + np.exp(-(0.8 * fz - 0.6 * rz - 0.2))), 0.05, 0.95)
            t = (rng.random(m) < prop).astype(np.int8)
            logged = np.where(t == 1, prop, 1 - prop)
            w = rng.random(m)  # one draw drives both potential outcomes (coupled)
            y0 = (w < p0).astype(np.int8)
            y1 = (w < p1).astype(np.int8)
            y = np.where(t == 1, y1, y0)
            revenue = np.where(y == 1, np.round(rng.lognormal(4.5, 0.5, size=m), 2), 0.0)
            ts = self.t0 + rng.integers(int(0.5 * self.span), self.span - 3 * 86400, size=m)
            # treated converters redeem their coupon within three days
            red = np.flatnonzero((t == 1) & (y == 1))
            redeem_who.append(acct[red])
            redeem_ts.append(ts[red] + rng.integers(60, 3 * 86400, size=len(red)))
            redeem_amt.append(revenue[red])
            redeem_cid.append(np.full(len(red), cid))
            rows.append(
                pa.table(
                    {
                        "campaign_id": pa.array(np.full(m, cid)),
                        "user_id": take(self.ids.user_id, acct),
                        "ts": pa.array((ts * 1_000_000).astype("datetime64[us]")),
                        "policy": pa.array(np.full(m, policy)),
                        "treatment": pa.array(t),
                        "propensity": pa.array(logged),
                        "age": pa.array(self.age[acct]),
                        "gender": pa.array(self.gender[acct]),
                        "city": pa.array(self.city[acct]),
                        "tier_level": pa.array(self.tier_level[acct]),
                        "recency_days": pa.array(self.recency[acct]),
                        "frequency_90d": pa.array(self.frequency[acct]),
                        "monetary_90d": pa.array(self.monetary[acct]),
                        "converted": pa.array(y),
                        "revenue": pa.array(revenue),
                    }
                )
            )
            truths.append(
                pa.table(
                    {
                        "campaign_id": pa.array(np.full(m, cid)),
                        "user_id": take(self.ids.user_id, acct),
                        "p0": pa.array(p0),
                        "p1": pa.array(p1),
                        "true_uplift": pa.array(p1 - p0),
                        "quadrant": pa.array(QUADRANTS[q]),
                        "y0": pa.array(y0),
                        "y1": pa.array(y1),
                    }
                )
            )
        who = np.concatenate(redeem_who)
        k = len(who)
        eid = event_offset + np.arange(k, dtype=np.int64)
        r_ts = np.concatenate(redeem_ts)
        redeem = pa.table(
            {
                "event_id": pa.array(eid),
                "ts": pa.array((r_ts * 1_000_000).astype("datetime64[us]")),
                "id_type": pa.array(np.full(k, "user_id")),
                "id_value": take(self.ids.user_id, who),
                "event": pa.array(np.full(k, "coupon_redeem")),
                "channel": pa.array(np.full(k, "app")),
                "category": pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), size=k)]),
                "amount": pa.array(np.concatenate(redeem_amt)),
                "campaign_id": pa.array(np.concatenate(redeem_cid)),
            }
        )
        redeem_truth = pa.table(
            {"event_id": pa.array(eid), "person_id": pa.array(self.ids.pid[who])}
        )
        return (
            pa.concat_tables(rows),
            pa.concat_tables(truths),
            redeem,
            redeem_truth,
            event_offset + k,
        )

    def people_table(self) -> pa.Table:
        return pa.table(
            {
                "person_id": pa.array(self.ids.pid),
                "user_id": self.ids.user_id,
                "household_id": pa.array(self.ids.household),
            }
        )


def make_world(
    n_users: int = 100_000,
    seed: int = 0,
    out_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> World:
    """Generate the synthetic marketing world and write it as Parquet.

    Parameters
    ----------
    n_users : int
        Number of people (100 .. 50,000,000). About 92% hold an account (``user_id``).
    seed : int
        Non-negative seed; the same ``(n_users, seed)`` gives the same world.
    out_dir : str or Path, optional
        Target folder (default ``settings().world_dir``, i.e. ``data/raw/world``). The
        world is written to a temporary folder beside it and renamed into place, so an
        interrupted run leaves the previous world intact.
    progress : bool
        Show a progress bar over chunks of people.

    Returns
    -------
    World
        The world on disk, with lazily loaded tables.

    Notes
    -----
    Noise in the identities (what identity resolution must cope with): junk values on
    3% of records, one hub device on 0.2% of logins, family members who log in on one
    shared device (15% of eligible households), 1.2% of phones recycled to a new owner
    at a known time, and 1% of e-mails typed with a typo. Campaign ``C001`` is randomised
    (propensity 0.5), ``C002`` is targeted by a logged propensity in [0.05, 0.95].
    """
    n_users, seed = _check_args(n_users, seed)
    target = Path(out_dir) if out_dir is not None else settings().world_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{int(time.time() * 1e6)}")
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    writers: dict[str, pq.ParquetWriter] = {}
    lost_total = np.zeros(len(CHANNELS))
    conv_total = 0.0

    def write(name: str, table: pa.Table) -> None:
        if name not in writers:
            writers[name] = pq.ParquetWriter(
                tmp / f"{name}.parquet", table.schema, compression="zstd"
            )
        writers[name].write_table(table.cast(writers[name].schema))

    try:
        n_chunks = (n_users + CHUNK - 1) // CHUNK
        rec_off = ev_off = j_off = 0
        chunks = range(n_chunks)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"world {n_users:,} users", unit="chunk")
        for ci in chunks:
            size = min(CHUNK, n_users - ci * CHUNK)
            ch = _Chunk(size, ci * CHUNK, seed, ci)
            ch.people()
            write("people", ch.people_table())
            ids, truth, rec_off = identities(ch.ids, ch.rng, ch.t0, ch.span, rec_off)
            write("identities", ids)
            write("identity_truth", truth)
            ev, ev_truth, prof, ev_off = ch.events_and_profiles(ev_off)
            write("events", ev)
            write("event_truth", ev_truth)
            write("profiles", prof)
            touches, conv, lost, p_conv, j_off = ch.journeys(j_off)
            lost_total += lost
            conv_total += p_conv.sum()
            write("touches", touches)
            write("conversions", conv)
            log, ctruth, redeem, redeem_truth, ev_off = ch.campaigns(ev_off)
            write("events", redeem)
            write("event_truth", redeem_truth)
            write("campaign_log", log)
            write("campaign_truth", ctruth)
        for w in writers.values():
            w.close()
        writers.clear()
        channel_truth = pd.DataFrame(
            {
                "channel": CHANNELS,
                "touch_effect": CHANNEL_EFFECT,
                "true_incremental_conversions": lost_total,
                "true_share": lost_total / lost_total.sum(),
            }
        )
        pq.write_table(
            pa.Table.from_pandas(channel_truth, preserve_index=False), tmp / "channel_truth.parquet"
        )
        meta = {
            "version": WORLD_VERSION,
            "n_users": n_users,
            "seed": seed,
            "start": START.isoformat(),
            "end": (START + timedelta(days=DAYS)).isoformat(),
            "expected_conversions": conv_total,
            "seconds": round(time.perf_counter() - started, 3),
            "tables": list(TABLES),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        for w in writers.values():
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return World(target)


def load_world(path: str | Path | None = None) -> World:
    """Open a world generated earlier (default ``data/raw/world``)."""
    return World(Path(path) if path is not None else settings().world_dir)
