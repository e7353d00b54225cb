"""Channel providers: the things that actually deliver a rendered message.

Two kinds, with different guarantees:

* transactional providers (:class:`LocalProvider`) write the delivery through the
  gateway's open database transaction (``Delivery.tx``), so the delivery and its record
  commit together or not at all: exactly once, even across a crash;
* external providers (:class:`WebhookProvider`) talk to another system; the gateway
  records the result after the call, so a crash between the two means the call is made
  again on redelivery (at least once). They pass the message key as ``Idempotency-Key``
  so the receiver can drop the repeat.
"""

from __future__ import annotations

import abc
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mktlab.errors import ValidationError
from mktlab.messaging.model import CHANNELS


@dataclass(frozen=True)
class Delivery:
    """One rendered message on one channel, as handed to :meth:`Provider.send`.

    ``tx`` is the gateway's open transaction on the delivery log; transactional providers
    write through it (``tx.add_inbox(delivery, provider_id)``), others ignore it.
    """

    key: str
    user_id: str
    channel: str
    template: str
    body: str
    title: str | None = None
    campaign_id: str | None = None
    ts: float = 0.0
    tx: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        """The JSON payload an external provider receives."""
        return {
            "key": self.key,
            "user_id": self.user_id,
            "channel": self.channel,
            "template": self.template,
            "title": self.title,
            "body": self.body,
            "campaign_id": self.campaign_id,
            "ts": self.ts,
        }


@dataclass(frozen=True)
class ProviderResult:
    """Outcome of one provider call: ``ok``, the provider's id for it, or the error."""

    ok: bool
    provider_id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ok, bool):
            raise ValidationError(f"provider_result.ok: expected a bool, got {self.ok!r}")
        if not self.ok and not self.error:
            raise ValidationError("provider_result.error: a failed result must say why")


class Provider(abc.ABC):
    """Interface of a channel provider.

    Subclasses set :attr:`name` and implement :meth:`send`. A provider whose writes go
    through ``Delivery.tx`` sets :attr:`transactional` so the gateway knows the call and
    the record are one transaction.
    """

    name: str = "provider"
    transactional: bool = False

    @abc.abstractmethod
    def send(self, delivery: Delivery) -> ProviderResult:
        """Deliver ``delivery``; never raise for a delivery failure, return it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (default: nothing to release)."""


class LocalProvider(Provider):
    """The embedded provider: the delivery *is* a row in the delivery log's inbox table.

    Parameters
    ----------
    channel : str
        One of :data:`~mktlab.messaging.CHANNELS`.
    fail_users : iterable of str
        Users this provider refuses (as if their device were unreachable), so fallback can
        be exercised without mocks.
    """

    transactional = True

    def __init__(self, channel: str, fail_users: Iterable[str] = ()):
        if channel not in CHANNELS:
            raise ValidationError(
                f"LocalProvider.channel: unknown channel {channel!r}; expected one of {CHANNELS}"
            )
        self.channel = channel
        self.name = f"local:{channel}"
        self.fail_users = frozenset(fail_users)

    def __repr__(self) -> str:
        return f"LocalProvider({self.channel!r}, fail_users={sorted(self.fail_users)!r})"

    def send(self, delivery: Delivery) -> ProviderResult:
        if delivery.user_id in self.fail_users:
            return ProviderResult(
                False, None, f"{self.name}: user {delivery.user_id!r} is unreachable"
            )
        if delivery.tx is None:
            raise ValidationError(
                f"{self.name}: needs the gateway's open transaction (Delivery.tx); "
                "send through Gateway.send / send_many"
            )
        provider_id = f"{self.channel}:{delivery.key}"
        delivery.tx.add_inbox(delivery, provider_id)
        return ProviderResult(True, provider_id, None)


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class WebhookProvider(Provider):
    """POST each delivery as JSON to ``url``.

    Delivery semantics are **at least once**: the gateway records the outcome after the
    HTTP call, inside the batch's transaction. If the process dies after the receiver
    answered but before that commit, the message is not recorded, and sending it again
    (same key) POSTs it again. Every request therefore carries ``Idempotency-Key: <key>``
    (the message key, stable across retries and redeliveries); receivers must drop a key
    they already processed. A retry after a timeout can repeat a request the same way.

    The body is ``{key, user_id, channel, template, title, body, campaign_id, ts}``.
    A 2xx answer is success (its JSON ``id`` field, if any, is the provider id); any other
    status, a timeout or a connection error is a failure naming the status code or the
    exception. 408/429/5xx, timeouts and connection errors are retried ``retries`` times
    with a short exponential backoff (50 ms, 100 ms, ...); other 4xx are not.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` endpoint.
    timeout : float
        Seconds per request.
    retries : int
        Extra tries after the first.
    headers : mapping, optional
        Extra request headers (e.g. an ``Authorization`` token).
    channel : str
        The channel this provider serves (default ``"webhook"``).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        retries: int = 2,
        headers: Mapping[str, str] | None = None,
        *,
        channel: str = "webhook",
        backoff: float = 0.05,
    ):
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"WebhookProvider.url: expected an http(s):// URL, got {url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValidationError(f"WebhookProvider.timeout: expected seconds > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValidationError(
                f"WebhookProvider.retries: expected an integer >= 0, got {retries!r}"
            )
        if channel not in CHANNELS:
            raise ValidationError(f"WebhookProvider.channel: unknown channel {channel!r}")
        self.url = url
        self.timeout = float(timeout)
        self.retries = retries
        self.headers = dict(headers or {})
        self.channel = channel
        self.backoff = float(backoff)
        self.name = f"webhook:{parts.hostname}"
        # a proxy taken from the environment must not intercept loopback receivers
        handlers = [urllib.request.ProxyHandler({})] if parts.hostname in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"WebhookProvider({self.url!r}, timeout={self.timeout}, retries={self.retries})"

    def _post(self, data: bytes, key: str) -> tuple[ProviderResult, bool]:
        """One request; returns (result, worth retrying)."""
        req = urllib.request.Request(self.url, data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        for k, v in self.headers.items():
            req.add_header(k, v)
        req.add_header("Idempotency-Key", key)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                payload = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return (
                ProviderResult(False, None, f"HTTP {exc.code} from {self.url}"),
                exc.code in _RETRY_STATUS,
            )
        except TimeoutError:  # socket.timeout is an alias since 3.10
            return ProviderResult(
                False, None, f"timeout after {self.timeout:g}s at {self.url}"
            ), True
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            return ProviderResult(False, None, f"{type(exc).__name__} at {self.url}: {why}"), True
        if not 200 <= status < 300:  # pragma: no cover - urllib raises for these
            return ProviderResult(False, None, f"HTTP {status} from {self.url}"), status >= 500
        provider_id = None
        try:
            doc = json.loads(payload) if payload else None
            if isinstance(doc, dict) and doc.get("id") is not None:
                provider_id = str(doc["id"])
        except ValueError:
            pass
        return ProviderResult(True, provider_id, None), False

    def send(self, delivery: Delivery) -> ProviderResult:
        data = json.dumps(delivery.to_json(), default=str).encode()
        result = ProviderResult(False, None, "not attempted")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            result, retry = self._post(data, delivery.key)
            if result.ok or not retry:
                break
        if not result.ok and self.retries:
            result = ProviderResult(False, None, f"{result.error} (after {attempt + 1} tries)")
        return result
