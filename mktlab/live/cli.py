"""``mktlab live``: validate, publish, run workers, watch the bus, read decisions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click


def _spec(spec_file, strategies, journeys, backend, partitions, namespace, clock, idle_exit):
    from mktlab.live.runner import load_spec

    spec = load_spec(spec_file) if spec_file else load_spec({"base_dir": str(Path.cwd())})
    if strategies:
        spec["strategies"] = [str(Path(s).resolve()) for s in strategies]
    if journeys:
        spec["journeys"] = [str(Path(j).resolve()) for j in journeys]
    for k, v in (
        ("backend", backend),
        ("partitions", partitions),
        ("namespace", namespace),
        ("clock", clock),
        ("idle_exit", idle_exit),
    ):
        if v is not None:
            spec[k] = v
    return spec


_common = [
    click.option(
        "--spec",
        "spec_file",
        type=click.Path(exists=True, dir_okay=False),
        help="A live spec YAML (see mktlab.live.runner).",
    ),
    click.option(
        "--strategy",
        "strategies",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="A strategy YAML (repeatable).",
    ),
    click.option(
        "--journey",
        "journeys",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="A journey YAML (repeatable).",
    ),
    click.option(
        "--backend",
        type=click.Choice(["redis", "rabbitmq"]),
        default=None,
        help="Event bus (default MKTLAB_BUS).",
    ),
    click.option(
        "--partitions",
        type=int,
        default=None,
        help="Bus partitions (default MKTLAB_BUS_PARTITIONS).",
    ),
    click.option("--namespace", default=None, help="Key / queue prefix (default mktlab:live)."),
]


def common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.group()
def live() -> None:
    """The live loop: events -> rules and journeys -> coupons and messages."""


@live.command("validate")
@common
def validate_cmd(spec_file, strategies, journeys, backend, partitions, namespace) -> None:
    """Validate strategies and journeys; a definition that fails here cannot be launched."""
    from mktlab.live.runner import definitions

    spec = _spec(spec_file, strategies, journeys, backend, partitions, namespace, None, None)
    s, j, t = definitions(spec)
    for x in s:
        click.echo(
            f"strategy {x.key}: ok ({len(x.rules.rules) if x.rules else 0} rules, fingerprint {x.fingerprint()})"
        )
    for x in j:
        click.echo(f"journey {x.name}:v{x.version}: ok ({len(x.nodes)} nodes)")
    click.echo(f"templates: {sorted(t) or 'none'}")


@live.command("publish")
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=click.Choice(["redis", "rabbitmq"]), default=None)
@click.option("--partitions", type=int, default=None)
@click.option("--namespace", default="mktlab:live", show_default=True)
@click.option(
    "--group",
    default="live",
    show_default=True,
    help="Consumer group to declare first (RabbitMQ keeps events only for declared groups).",
)
@click.option("--rate", type=float, default=None, help="Pace at this many events per second.")
@click.option(
    "--tick/--no-tick",
    default=True,
    show_default=True,
    help="End with a watermark at the last event's time (fires due journey timers).",
)
def publish_cmd(events_file, backend, partitions, namespace, group, rate, tick) -> None:
    """Replay an event file (CSV, Parquet, JSON lines) onto the bus; bad rows are dead-lettered."""
    from mktlab.live.bus import open_bus
    from mktlab.live.producer import publish_frame, read_events

    df = read_events(events_file)
    with open_bus(backend, partitions=partitions, namespace=namespace, groups=(group,)) as bus:
        t0 = time.perf_counter()
        rep = publish_frame(bus, df, rate=rate, progress=True, tick=tick)
        dt = time.perf_counter() - t0
    click.echo(
        f"published {rep['published']:,} events, dead-lettered {rep['dead_lettered']:,} "
        f"in {dt:.2f}s ({rep['published'] / max(dt, 1e-9):,.0f}/s)"
    )


@live.command("run")
@common
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--clock",
    type=click.Choice(["event", "wall"]),
    default=None,
    help="Timers on event time (replays) or also the wall clock.",
)
@click.option(
    "--until-idle",
    "idle_exit",
    type=float,
    default=None,
    help="Exit after this many seconds without events.",
)
def run_cmd(
    spec_file, strategies, journeys, backend, partitions, namespace, workers, clock, idle_exit
) -> None:
    """Start N workers on the bus (Ctrl+C or SIGTERM stops them after a last checkpoint)."""
    from mktlab.live.runner import definitions
    from mktlab.live.worker import run_workers

    if workers < 1:
        raise click.BadParameter("expected >= 1", param_hint="--workers")
    spec = _spec(spec_file, strategies, journeys, backend, partitions, namespace, clock, idle_exit)
    s, j, _ = definitions(spec)  # refuse to launch anything invalid, before any process starts
    if not s and not j:
        raise click.UsageError("nothing to run: give --strategy, --journey or --spec")
    click.echo(
        f"starting {workers} worker(s): {[x.key for x in s] + [f'{x.name}:v{x.version}' for x in j]}"
    )
    if idle_exit is None:
        procs = run_workers(spec, workers, wait=False)
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            from mktlab.live.worker import stop_workers

            stop_workers(procs)
        return
    for r in run_workers(spec, workers, wait=True):
        click.echo(
            f"worker {r['index']}: {r['events']:,} events, {r['decisions']:,} decisions, effects {r['effects']}"
        )


@live.command("status")
@click.option("--backend", type=click.Choice(["redis", "rabbitmq"]), default=None)
@click.option("--namespace", default="mktlab:live", show_default=True)
@click.option("--group", default="live", show_default=True)
def status_cmd(backend, namespace, group) -> None:
    """Bus lag per partition, dead letters and the workers' counters."""
    from mktlab.coupons.connection import get_redis
    from mktlab.live.bus import open_bus

    with open_bus(backend, namespace=namespace, groups=(group,)) as bus:
        stats = bus.stats(group)
    counters = get_redis().hgetall(f"{namespace}:metrics")
    click.echo(json.dumps({"bus": stats, "workers": counters}, indent=2, default=str))


@live.command("dead-letters")
@click.option("--backend", type=click.Choice(["redis", "rabbitmq"]), default=None)
@click.option("--namespace", default="mktlab:live", show_default=True)
@click.option("--limit", type=int, default=20, show_default=True)
def dead_letters_cmd(backend, namespace, limit) -> None:
    """The oldest dead letters with their reasons."""
    from mktlab.live.bus import open_bus

    with open_bus(backend, namespace=namespace) as bus:
        for d in bus.dead_letters(limit):
            click.echo(f"{d.reason}\t{d.payload[:200]!r}")


@live.command("decisions")
@click.option("--source", default=None, help="Only this strategy or journey.")
def decisions_cmd(source) -> None:
    """A summary of the decision log: decisions by source, action and status."""
    from mktlab.live.decisions import DecisionLog

    df = DecisionLog().read(source=source)
    if df.empty:
        click.echo("no decisions logged yet")
        return
    click.echo(df.groupby(["source", "action", "status"]).size().rename("n").to_string())
