"""``mktlab campaign watch``: run the breakers over launched campaigns (Prometheus on a port)."""

from __future__ import annotations

import click


@click.command("watch")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between passes."
)
@click.option("--once", is_flag=True, help="One pass, print the trips, exit.")
@click.option(
    "--port", type=int, default=None, help="Serve the metrics for Prometheus on this port."
)
@click.option(
    "--key", default=None, help="API key (default: MKTLAB_API_KEY, then the local admin key)."
)
def watch(interval, once, port, key) -> None:
    """Watch running campaigns; a tripped breaker pauses its campaign and records why."""
    from mktlab.campaigns.cli_common import lifecycle, principal
    from mktlab.campaigns.roles import require
    from mktlab.campaigns.watch import Watcher

    require(principal(key), "campaign.pause")
    w = Watcher(lifecycle(), interval=interval)
    if once:
        trips = w.tick()
        for cid, o in w.observed.items():  # what the breakers judged, campaign by campaign
            c = o.counters
            click.echo(f"{cid}: issued {o.status.get('issued', 0)}, spend {o.spend:,.2f}; users treated "
                       f"{c['treated']} (converted {c['conv_treated']}), holdout {c['holdout']} "
                       f"(converted {c['conv_holdout']}); decisions {c['decisions']}, errors {c['errors']}")  # fmt: skip
        for t in trips:
            click.echo(f"paused by {t.breaker}: {t.reason}")
        click.echo(
            f"watched {w.last_tick['campaigns']} campaign(s) in {w.last_tick['seconds'] * 1000:.0f} ms"
        )
        return
    if port:
        from prometheus_client import start_http_server

        start_http_server(port)
        click.echo(f"metrics on http://127.0.0.1:{port}/metrics")
    w.start()
    click.echo(f"watching every {interval:g} s; Ctrl+C stops")
    try:
        while True:
            w._stop.wait(3600)
    except KeyboardInterrupt:
        w.stop()
