"""``mktlab sandbox``: replay strategies over logged data; check rule files."""

from __future__ import annotations

from pathlib import Path

import click

from mktlab.errors import DataError


def _load_data(kind: str, campaign: str):
    from mktlab.sandbox.data import from_hillstrom, from_world

    if kind == "hillstrom":
        return from_hillstrom()
    from mktlab.config import settings

    world_dir = settings().world_dir
    if not (world_dir / "campaign_log.parquet").exists():
        raise DataError(f"no synthetic world under {world_dir}; generate one with `mktlab world`")
    return from_world(None, campaign)


@click.group()
def sandbox() -> None:
    """Replay strategies over logged data (IPS / SNIPS / DM / DR with intervals)."""


@sandbox.command("replay")
@click.argument(
    "strategy_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--data",
    "data_kind",
    type=click.Choice(["world", "hillstrom"]),
    default="world",
    show_default=True,
)
@click.option(
    "--campaign", default="C001", show_default=True, help="world: campaign_log campaign id"
)
@click.option(
    "--estimator",
    "estimators",
    multiple=True,
    help="ips, snips, dm, dr or replay (default: all possible)",
)
@click.option("--report-estimator", default=None, help="estimator shown in the table (default: dr)")
@click.option("--n-boot", default=500, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--baseline/--no-baseline",
    default=True,
    show_default=True,
    help="add the logged policy as a baseline",
)
@click.option("--mlflow/--no-mlflow", "to_mlflow", default=True, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the table as CSV",
)
def replay_command(
    strategy_files,
    data_kind,
    campaign,
    estimators,
    report_estimator,
    n_boot,
    seed,
    baseline,
    to_mlflow,
    out,
):
    """Replay STRATEGY_FILES (YAML) over --data and print the side-by-side report."""
    import warnings

    import pandas as pd

    from mktlab.io import write_text
    from mktlab.sandbox.ope import LowEffectiveSampleSizeWarning
    from mktlab.sandbox.replay import replay_many
    from mktlab.sandbox.report import compare, log_results
    from mktlab.strategy import Strategy, TreatmentPolicy

    strategies = [Strategy.from_yaml(p) for p in strategy_files]  # parse all before loading data
    data = _load_data(data_kind, campaign)
    names = [s.name for s in strategies]
    base = None
    if baseline and data.logging_pi() is not None and "logged" not in names:
        # the baseline pays the same coupon terms, so cost and ROI compare like for like
        strategies.insert(0, Strategy("logged", TreatmentPolicy("logged"), coupon=strategies[0].coupon))
        base = "logged"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LowEffectiveSampleSizeWarning)
        results = replay_many(
            strategies, data, estimators=estimators or None, n_boot=n_boot, seed=seed
        )
    for w in caught:
        if issubclass(w.category, LowEffectiveSampleSizeWarning):
            click.secho(f"warning: {w.message}", fg="yellow", err=True)
    for r in results:
        for note in r.notes:
            if "propensit" in note:
                click.secho(f"note ({r.name}): {note}", fg="yellow", err=True)
    table = compare(results, estimator=report_estimator, baseline=base)
    cols = ["estimator", "treated", "redemptions", "cost", "incremental_conversions", "incremental_conversions_lo",
            "incremental_conversions_hi", "incremental_revenue", "roi", "ess"]  # fmt: skip
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.2f}".format
    ):
        click.echo(f"data: {data.name} ({len(data):,} logged decisions)")
        click.echo(table[cols].to_string())
    if out is not None:
        write_text(table.to_csv(), out)
        click.echo(f"wrote {out}")
    if to_mlflow:
        run_id = log_results(
            results, run_name=f"replay-{data.name}", estimator=report_estimator, baseline=base
        )
        click.echo(f"mlflow run {run_id}")


@sandbox.command("check-rules")
@click.argument("rules_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_rules(rules_file):
    """Validate a rule set (YAML) and list its conflicts."""
    from mktlab.rules import RuleSet, compile_rules, find_conflicts

    rs = RuleSet.from_yaml(rules_file)
    net = compile_rules(rs)
    click.echo(f"{rs.name} v{rs.version} ({rs.fingerprint}): {net.describe()}")
    for c in find_conflicts(rs):
        click.secho(f"conflict: {c}", fg="yellow")
