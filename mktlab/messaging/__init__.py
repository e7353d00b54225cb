"""The omnichannel message gateway: providers, priority and fallback, caps, quiet hours, receipts.

A journey or rule decides "send template T to user U"; the gateway turns that into at
most one delivery through the best allowed channel and records everything in a
:class:`DeliveryLog` that a notebook reads as DataFrames.

>>> from mktlab.messaging import Gateway, Message, QuietHours, TemplateCatalog
>>> from mktlab.rules.model import FrequencyCap
>>> gw = Gateway.default(
...     TemplateCatalog.from_dict({"reminder": {"body": "{name}, your cart misses you"}}),
...     caps=[FrequencyCap("push", 1, "1d"), FrequencyCap("*", 3, "7d")],
...     quiet_hours=QuietHours("21:00", "08:00"), default_tz="Asia/Shanghai")
>>> gw.send(Message("cart:u42:evt-9", "u42", "reminder", ("push", "sms"), ts=1.7e9,
...                 params={"name": "Ada"})).status
'sent'
>>> gw.log.deliveries()          # one row per key; gw.log.attempts(), gw.log.receipts()
"""

from mktlab.messaging.gateway import Gateway
from mktlab.messaging.log import DeliveryLog
from mktlab.messaging.model import (
    CHANNELS,
    OUTCOMES,
    RECEIPT_STATUSES,
    STATUSES,
    DeliveryResult,
    Message,
)
from mktlab.messaging.providers import (
    Delivery,
    LocalProvider,
    Provider,
    ProviderResult,
    WebhookProvider,
)
from mktlab.messaging.quiet import QuietHours
from mktlab.messaging.templates import Template, TemplateCatalog

__all__ = [
    "CHANNELS",
    "OUTCOMES",
    "RECEIPT_STATUSES",
    "STATUSES",
    "Delivery",
    "DeliveryLog",
    "DeliveryResult",
    "Gateway",
    "LocalProvider",
    "Message",
    "Provider",
    "ProviderResult",
    "QuietHours",
    "Template",
    "TemplateCatalog",
    "WebhookProvider",
]
