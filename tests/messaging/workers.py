"""Code run in child processes by the concurrency tests (spawned: must be importable)."""

from __future__ import annotations

import os
import random

from mktlab.messaging import DeliveryLog, Gateway, LocalProvider, Message, TemplateCatalog
from mktlab.rules.model import FrequencyCap

TEMPLATES = {"news": "Read this week's news, {name}"}
T0 = 1_714_550_400.0


def shared_messages(n: int) -> list[Message]:
    """The same ``n`` keys for every process (50 users)."""
    return [
        Message(f"shared-{i}", f"u{i % 50}", "news", ("push", "sms"), T0 + i, params={"name": "x"})
        for i in range(n)
    ]


def send_worker(url: str, n: int, seed: int, barrier, queue) -> None:
    """Send the shared keys in a shuffled order in small batches, plus capped messages."""
    gw = Gateway(DeliveryLog(url), TemplateCatalog.from_dict(TEMPLATES),
                 caps=[FrequencyCap("push", 3, "1d")])  # fmt: skip
    msgs = shared_messages(n)
    # each process's own keys to one hot user: the push cap must hold across both (one
    # event time, so that every one of them sees the others in its window)
    msgs += [
        Message(f"hot-{seed}-{j}", "hot", "news", ("push",), T0 + 60, params={"name": "h"})
        for j in range(10)
    ]
    random.Random(seed).shuffle(msgs)
    barrier.wait()
    out = []
    for i in range(0, len(msgs), 7):
        out += [(r.key, r.status, r.channel) for r in gw.send_many(msgs[i : i + 7])]
    queue.put(out)


class DieAfter(LocalProvider):
    """A local provider whose process dies (no cleanup) on its ``n``-th delivery."""

    def __init__(self, channel: str, n: int):
        super().__init__(channel)
        self.n = n

    def send(self, delivery):
        res = super().send(delivery)
        self.n -= 1
        if self.n == 0:
            os._exit(17)  # after the provider wrote, before the batch committed
        return res


def crash_worker(url: str, n: int, die_after: int, batch: int) -> None:
    gw = Gateway(DeliveryLog(url), TemplateCatalog.from_dict(TEMPLATES),
                 providers={"push": DieAfter("push", die_after)})  # fmt: skip
    msgs = shared_messages(n)
    for i in range(0, n, batch):
        gw.send_many(msgs[i : i + batch])
