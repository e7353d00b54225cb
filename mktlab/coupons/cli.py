"""``mktlab coupons``: create campaigns, inspect them, reconcile, simulate a flash sale."""

from __future__ import annotations

import json

import click


def _issuer(redis_url: str | None, ledger_url: str | None, namespace: str):
    from mktlab.coupons import CouponIssuer

    return CouponIssuer(redis=redis_url, ledger=ledger_url, namespace=namespace)


_common = [
    click.option(
        "--redis-url", default=None, help="Redis URL (default: MKTLAB_REDIS_URL or embedded)."
    ),
    click.option(
        "--ledger-url",
        default=None,
        help="Ledger SQLAlchemy URL (default: MKTLAB_LEDGER_URL or SQLite).",
    ),
    click.option("--namespace", default="mktlab:cp", show_default=True, help="Redis key prefix."),
]


def common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.group()
def coupons() -> None:
    """Coupon issuer: create, status, reconcile, simulate."""


@coupons.command()
@click.argument("campaign_id", required=False)
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), help="Campaign YAML.")
@click.option("--stock", type=int, help="Total coupons.")
@click.option("--face-value", type=float, default=10.0, show_default=True)
@click.option("--cost", type=float, default=None, help="Cost per coupon (default: face value).")
@click.option("--budget", type=float, default=None)
@click.option("--per-user-limit", type=int, default=1, show_default=True)
@click.option("--start", default=None, help="ISO time the campaign opens.")
@click.option("--end", default=None, help="ISO time the campaign closes.")
@click.option("--shards", type=int, default=1, show_default=True)
@click.option("--prededuct-chunk", type=int, default=0, show_default=True)
@common
def create(
    campaign_id,
    path,
    stock,
    face_value,
    cost,
    budget,
    per_user_limit,
    start,
    end,
    shards,
    prededuct_chunk,
    redis_url,
    ledger_url,
    namespace,
):
    """Create a campaign from options or a YAML file (--file)."""
    from mktlab.coupons import Campaign
    from mktlab.errors import ValidationError

    if path:
        campaign = Campaign.from_yaml(path)
    else:
        if campaign_id is None or stock is None:
            raise ValidationError("create: give CAMPAIGN_ID and --stock, or --file campaign.yaml")
        campaign = Campaign(
            campaign_id, stock=stock, face_value=face_value, cost=cost, budget=budget,
            per_user_limit=per_user_limit, start=start, end=end, shards=shards,
            prededuct_chunk=prededuct_chunk,
        )  # fmt: skip
    issuer = _issuer(redis_url, ledger_url, namespace)
    issuer.create_campaign(campaign)
    click.echo(
        json.dumps({k: v for k, v in issuer.status(campaign.campaign_id).items() if k != "shards"})
    )


@coupons.command()
@click.argument("campaign_id")
@click.option("--shards/--no-shards", default=False, help="Include per-shard counters.")
@common
def status(campaign_id, shards, redis_url, ledger_url, namespace):
    """Print a campaign's counters (Redis and ledger) as JSON."""
    st = _issuer(redis_url, ledger_url, namespace).status(campaign_id)
    if not shards:
        st.pop("shards")
    click.echo(json.dumps(st, default=str))


@coupons.command()
@click.argument("campaign_id")
@common
def reconcile(campaign_id, redis_url, ledger_url, namespace):
    """Rebuild a campaign's Redis state from the ledger; print what was repaired."""
    report = _issuer(redis_url, ledger_url, namespace).reconcile(campaign_id)
    click.echo(json.dumps(report.to_dict()))


@coupons.command()
@click.option("--stock", type=int, default=10_000, show_default=True)
@click.option("--requests", "n_requests", type=int, default=50_000, show_default=True)
@click.option(
    "--arrival", type=click.Choice(["steady", "burst", "herd"]), default="herd", show_default=True
)
@click.option(
    "--rate", type=float, default=None, help="Arrivals per second (default: as fast as possible)."
)
@click.option("--duplicate-rate", type=float, default=0.1, show_default=True)
@click.option("--retry-rate", type=float, default=0.02, show_default=True)
@click.option("--workers", type=int, default=4, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--shards", type=int, default=4, show_default=True)
@click.option("--prededuct-chunk", type=int, default=0, show_default=True)
@click.option(
    "--durability", type=click.Choice(["ledger", "outbox"]), default="ledger", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@common
def simulate(redis_url, ledger_url, namespace, **kwargs):
    """Simulate a flash sale against a fresh campaign; print the report as JSON."""
    from mktlab.coupons.simulate import SimulationConfig
    from mktlab.coupons.simulate import simulate as run

    report = run(
        SimulationConfig(namespace=namespace, **kwargs), redis=redis_url, ledger=ledger_url
    )
    summary = report.summary()
    summary.pop("config")
    click.echo(json.dumps(summary, default=float))
