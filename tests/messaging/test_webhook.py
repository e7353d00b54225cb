"""WebhookProvider against a real HTTP server on loopback that fails on purpose."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mktlab.errors import ValidationError
from mktlab.messaging import Delivery, Gateway, LocalProvider, Message, WebhookProvider


class Receiver:
    """A real HTTP server: the first ``fail_first`` requests get ``fail_status``."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500, delay: float = 0.0):
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        {"headers": dict(self.headers), "body": json.loads(body)}
                    )
                    n = len(receiver.requests)
                if receiver.delay:
                    time.sleep(receiver.delay)
                if n <= receiver.fail_first:
                    self.send_response(receiver.fail_status)
                    self.end_headers()
                    return
                out = json.dumps({"id": f"wh-{n}"}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up, as the timeout test intends

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def delivery(key="k1") -> Delivery:
    return Delivery(key, "u1", "webhook", "news", "Read this", None, "spring", 1.7e9)


def test_retries_after_500s_then_succeeds():
    with Receiver(fail_first=2) as rx:
        res = WebhookProvider(rx.url, retries=2, headers={"Authorization": "Bearer t"}).send(
            delivery()
        )
    assert res.ok
    assert res.provider_id == "wh-3"
    assert len(rx.requests) == 3
    for req in rx.requests:  # every try carries the same key
        assert req["headers"]["Idempotency-Key"] == "k1"
        assert req["headers"]["Authorization"] == "Bearer t"
    assert rx.requests[0]["body"] == {
        "key": "k1", "user_id": "u1", "channel": "webhook", "template": "news",
        "title": None, "body": "Read this", "campaign_id": "spring", "ts": 1.7e9,
    }  # fmt: skip


def test_always_500_fails_with_status_code():
    with Receiver(fail_first=10**6) as rx:
        res = WebhookProvider(rx.url, retries=2).send(delivery())
    assert not res.ok
    assert "HTTP 500" in res.error
    assert "after 3 tries" in res.error
    assert len(rx.requests) == 3


def test_client_error_is_not_retried():
    with Receiver(fail_first=10**6, fail_status=422) as rx:
        res = WebhookProvider(rx.url, retries=2).send(delivery())
    assert not res.ok
    assert "HTTP 422" in res.error
    assert len(rx.requests) == 1


def test_timeout_is_a_failure_naming_it():
    with Receiver(delay=1.0) as rx:
        res = WebhookProvider(rx.url, timeout=0.2, retries=0).send(delivery())
    assert not res.ok
    assert "timeout after 0.2s" in res.error


def test_connection_refused_is_a_failure():
    with Receiver() as rx:
        url = rx.url
    res = WebhookProvider(url, retries=1, backoff=0.01).send(delivery())
    assert not res.ok
    assert "refused" in res.error.lower() or "URLError" in res.error


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"url": "ftp://x"}, "http"), ({"url": "http://h", "timeout": 0}, "timeout"),
     ({"url": "http://h", "retries": -1}, "retries")],
)  # fmt: skip
def test_bad_webhook_config(kw, match):
    with pytest.raises(ValidationError, match=match):
        WebhookProvider(**kw)


def test_gateway_falls_back_from_failing_webhook(log, templates):
    with Receiver(fail_first=10**6) as rx:
        gw = Gateway(log, templates, providers={
            "webhook": WebhookProvider(rx.url, retries=1, backoff=0.01),
            "email": LocalProvider("email"),
        })  # fmt: skip
        r = gw.send(Message("k1", "u1", "news", ("webhook", "email"), 1.7e9))
        assert (r.status, r.channel) == ("sent", "email")
        assert r.attempts == (("webhook", "failed"), ("email", "sent"))
        assert "HTTP 500" in r.reason
        assert len(rx.requests) == 2
    att = log.attempts()
    assert "HTTP 500" in att.detail.iloc[0]


def test_gateway_webhook_success_and_dedupe(log, templates):
    with Receiver(fail_first=1) as rx:
        gw = Gateway(log, templates, providers={"webhook": WebhookProvider(rx.url, backoff=0.01)})
        msg = Message("k9", "u1", "reminder", ("webhook",), 1.7e9, params={"name": "Zo"})
        r = gw.send(msg)
        assert (r.status, r.channel) == ("sent", "webhook")
        assert gw.send(msg).status == "duplicate"
        assert len(rx.requests) == 2  # one 500, one success; the duplicate called nothing
        assert rx.requests[-1]["body"]["body"] == "Zo, your cart misses you"
    row = log.deliveries().iloc[0]
    assert row.provider_id == "wh-2"
    assert log.inbox().empty  # external deliveries are not in the local inbox
