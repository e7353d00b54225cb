"""mktlab's Prometheus metrics, served on ``/metrics`` beside BentoML's own.

Created on first use inside a worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` when a
worker starts, after the service module is imported, and ``prometheus_client`` must see
it to write the per-process files ``/metrics`` aggregates.
"""

from __future__ import annotations

import threading
from typing import Any

_METRICS: dict[str, Any] = {}
_LOCK = threading.Lock()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def metrics() -> dict[str, Any]:
    """``issue``, ``events``, ``errors`` counters, the ``latency`` histogram and the live
    gauges ``dead_letters`` and ``live`` (created once per process)."""
    if not _METRICS:
        with _LOCK:
            if not _METRICS:
                from prometheus_client import Counter, Histogram

                _METRICS["issue"] = Counter(
                    "mktlab_issue_outcomes_total",
                    "Coupon issuance answers by status, reason and whether they replay a request_id",
                    ["status", "reason", "replayed"],
                )
                _METRICS["latency"] = Histogram(
                    "mktlab_endpoint_seconds",
                    "Time spent in mktlab endpoint logic",
                    ["endpoint"],
                    buckets=LATENCY_BUCKETS,
                )
                _METRICS["events"] = Counter(
                    "mktlab_events_total",
                    "Events received on POST /events: published, or dead-lettered by reason",
                    ["outcome", "reason"],
                )
                from prometheus_client import Gauge

                _METRICS["dead_letters"] = Gauge(
                    "mktlab_live_dead_letters",
                    "Events in the live bus's dead-letter store (malformed, any producer)",
                    multiprocess_mode="max",
                )
                _METRICS["live"] = Gauge(
                    "mktlab_live_worker_total",
                    "Live workers' counters (events, decisions, effects and their outcomes)",
                    ["counter"],
                    multiprocess_mode="max",
                )
                _METRICS["errors"] = Counter(
                    "mktlab_endpoint_errors_total",
                    "Endpoint calls answered with an error, by HTTP status",
                    ["endpoint", "status"],
                )
    return _METRICS
