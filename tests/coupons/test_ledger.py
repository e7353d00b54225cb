"""The ledger on SQLite and on PostgreSQL, and what happens when it goes away."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid

import pytest

from mktlab.coupons import Campaign, CouponIssuer, Ledger
from mktlab.errors import ServiceUnavailableError

from .conftest import pg_url

pytestmark = pytest.mark.integration


def _row(user, seq=1, code="C"):
    return {
        "user_id": user,
        "seq": seq,
        "coupon_code": code,
        "shard": 0,
        "home_shard": 0,
        "request_id": f"r-{user}-{seq}",
        "lease_id": None,
        "issued_at": 1.0,
    }


def test_unique_campaign_user_seq_and_idempotent_inserts(ledger):
    ledger.add_campaign(Campaign("L1", stock=5), salt="s")
    ledger.record("L1", [_row("a"), _row("b")])
    ledger.record("L1", [_row("a"), _row("a", 2)])  # replay of a: ignored, a#2 is new
    assert ledger.count("L1") == 3
    assert ledger.claims("L1") == {"a": 2, "b": 1}


@pytest.fixture
def pg_ledger():
    url = pg_url()
    if url is None:
        pytest.skip("PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is not reachable")
    led = Ledger(url)
    created: list[str] = []
    yield led, created
    for cid in created:
        led.delete_campaign(cid)
    led.dispose()


def test_issuer_on_postgresql_ledger(pg_ledger, redis_client, ns):
    led, created = pg_ledger
    cid = f"pg-{uuid.uuid4().hex[:8]}"
    created.append(cid)
    iss = CouponIssuer(redis=redis_client, ledger=led, namespace=ns)
    iss.create_campaign(Campaign(cid, stock=5, shards=2))
    res = iss.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(7)] + [("u0", "r0")])
    assert sum(r.issued for r in res) == 6  # 5 distinct + the replay of r0
    assert led.count(cid) == 5
    assert iss.reconcile(cid).consistent


class _Proxy:
    """A TCP forwarder in front of PostgreSQL that can be cut like a network link."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.up = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _pipe(self, a, b):
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def cut(self):
        self.up = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.server.close()


def test_ledger_outage_stops_issuance(pg_ledger, redis_client, ns):
    led, created = pg_ledger
    proxy = _Proxy(5432)
    cid = f"pgx-{uuid.uuid4().hex[:8]}"
    created.append(cid)
    try:
        via_proxy = Ledger(f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test")
        iss = CouponIssuer(
            redis=redis_client, ledger=via_proxy, namespace=ns, ledger_check_interval=0.0
        )
        iss.create_campaign(Campaign(cid, stock=10))
        assert iss.issue(cid, "u1", "r1").issued
        proxy.cut()
        before = iss.redis.hget(iss._keys(cid, 0)["meta"], "issued")
        with pytest.raises(ServiceUnavailableError, match="ledger"):
            iss.issue(cid, "u2", "r2")
        # refused before Redis was touched: no coupon exists without a ledger record
        assert iss.redis.hget(iss._keys(cid, 0)["meta"], "issued") == before
        proxy.restore()
        assert iss.issue(cid, "u2", "r2").issued
        assert led.count(cid) == 2
        via_proxy.dispose()
    finally:
        proxy.close()


def test_unreachable_ledger_is_a_clear_error(redis_client, ns):
    led = Ledger("postgresql://postgres@127.0.0.1:1/test")
    assert not led.ping()
    iss = CouponIssuer(redis=redis_client, ledger=led, namespace=ns)
    with pytest.raises(ServiceUnavailableError, match="ledger database"):
        iss.create_campaign(Campaign("never", stock=5))
    assert not list(redis_client.scan_iter(match=f"{ns}:*"))


def test_sqlite_writers_queue_on_the_lock_file_instead_of_polling(tmp_path):
    """A writer waits on ``<db>.lock`` and proceeds the moment the holder lets go."""
    import fcntl
    import os
    import time

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    ledger.add_campaign(Campaign("W1", stock=5), salt="s")
    fd = os.open(str(tmp_path / "ledger.db.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is writing
    done = threading.Event()
    t = threading.Thread(target=lambda: (ledger.record("W1", [_row("a")]), done.set()))
    t.start()
    time.sleep(0.3)
    assert not done.is_set(), "record() wrote while another writer held the ledger lock"
    released = time.perf_counter()
    fcntl.flock(fd, fcntl.LOCK_UN)
    assert done.wait(5)
    assert time.perf_counter() - released < 0.5
    t.join()
    os.close(fd)
    assert ledger.count("W1") == 1
    ledger.dispose()
