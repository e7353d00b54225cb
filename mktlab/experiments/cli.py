"""``mktlab experiments``: design, assign and analyse A/B experiments."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.io import read_table


def _weights(spec: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in spec.split(","):
        arm, sep, w = part.partition("=") if "=" in part else part.partition(":")
        try:
            out[arm.strip()] = float(w) if sep else 1.0
        except ValueError as exc:
            raise ValidationError(f"{name}: bad weight in {part!r} (use arm=weight,...)") from exc
    return out


@click.group()
def experiments() -> None:
    """A/B experiments: sample size, assignment, analysis, SRM, sequential peeking."""


@experiments.command("size")
@click.option(
    "--baseline", type=float, required=True, help="Control rate (proportion) or mean (with --sd)."
)
@click.option(
    "--mde",
    type=float,
    required=True,
    help="Minimum detectable effect (relative unless --absolute).",
)
@click.option("--absolute", is_flag=True, help="The MDE is absolute (e.g. 0.005 = +0.5 points).")
@click.option(
    "--sd", type=float, default=None, help="Standard deviation per unit: plan for a mean."
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--power", type=float, default=0.8, show_default=True)
@click.option(
    "--ratio", type=float, default=1.0, show_default=True, help="n_treatment / n_control."
)
@click.option(
    "--arms", "n_arms", type=int, default=2, show_default=True, help="Arms including control."
)
@click.option("--one-sided", is_flag=True, help="One-sided test (treatment larger).")
@click.option(
    "--daily-traffic",
    type=float,
    default=None,
    help="Eligible units a day: also print the duration.",
)
@click.option("--traffic-share", type=float, default=1.0, show_default=True)
def size_command(
    baseline,
    mde,
    absolute,
    sd,
    alpha,
    power,
    ratio,
    n_arms,
    one_sided,
    daily_traffic,
    traffic_share,
) -> None:
    """Units per arm (and duration) to detect an effect."""
    from mktlab.experiments.design import sample_size_mean, sample_size_proportion

    kw = dict(relative=not absolute, alpha=alpha, power=power, ratio=ratio, n_arms=n_arms,
              alternative="larger" if one_sided else "two-sided")  # fmt: skip
    plan = (
        sample_size_mean(baseline, sd, mde, **kw)
        if sd is not None
        else sample_size_proportion(baseline, mde, **kw)
    )
    click.echo(f"{plan.kind}: baseline {plan.baseline:g}, MDE {plan.mde_absolute:.6g} absolute "
               f"({plan.mde_relative:.4%} relative), alpha {alpha:g}, power {power:g}")  # fmt: skip
    click.echo(f"n_control   {plan.n_control:,}")
    click.echo(f"n_treatment {plan.n_treatment:,} (each of {n_arms - 1} treatment arm(s))")
    click.echo(f"total       {plan.total:,}")
    if daily_traffic is not None:
        d = plan.duration(daily_traffic, traffic_share)
        click.echo(
            f"duration    {d.days} days ({d.weeks} week(s); {d.days_needed} days of traffic needed)"
        )


@experiments.command("analyze")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--arm", default="arm", show_default=True, help="Arm column (unit-level files).")
@click.option(
    "--control", default=None, help="Control arm (default: an arm named control, else the first)."
)
@click.option("--metric", "metrics", multiple=True, help="Metric column(s) of a unit-level file.")
@click.option("--covariate", "covariates", multiple=True, help="CUPED covariate as metric=column.")
@click.option(
    "--correction",
    type=click.Choice(["holm", "bonferroni", "bh", "none"]),
    default="holm",
    show_default=True,
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--name", default=None, help="Experiment name (default: the file's stem).")
@click.option(
    "--log/--no-log", "log_run", default=False, show_default=True, help="Log the report to MLflow."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the table (.csv/.parquet).",
)
def analyze_command(
    results, arm, control, metrics, covariates, correction, alpha, name, log_run, out
) -> None:
    """Analyse RESULTS: a unit-level file (arm + metric columns) or a summary file
    (arm, metric, n, successes | mean, std)."""
    from mktlab.experiments.analysis import analyze, analyze_summary

    df = read_table(results, "results")
    name = name or results.stem
    if {"metric", "n"} <= set(df.columns) and (
        {"successes", "conversions"} & set(df.columns) or {"mean", "std"} <= set(df.columns)
    ):
        res = analyze_summary(df, control=control, alpha=alpha, correction=correction, name=name)
    else:
        cov = {}
        for c in covariates:
            m, sep, col = c.partition("=")
            if not sep:
                raise ValidationError(f"--covariate: expected metric=column, got {c!r}")
            cov[m] = col
        ms = list(metrics) or [
            c
            for c in df.columns
            if c != arm and c not in cov.values() and pd.api.types.is_numeric_dtype(df[c])
        ]
        res = analyze(
            df,
            ms,
            arm=arm,
            control=control,
            covariates=cov,
            alpha=alpha,
            correction=correction,
            name=name,
        )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        click.echo(res.summary().to_string(index=False))
    flag = "MISMATCH — do not trust the lifts" if res.srm.mismatch else "ok"
    click.echo(
        f"\nSRM: chi2={res.srm.chi2:.4g}, p={res.srm.p_value:.4g} ({flag}); counts {res.srm.observed}"
    )
    if out is not None:
        from mktlab.io import atomic_path, write_parquet

        if out.suffix.lower() in (".parquet", ".pq"):
            write_parquet(res.table, out)
        else:
            with atomic_path(out) as tmp:
                res.table.to_csv(tmp, index=False)
        click.echo(f"table written to {out}")
    if log_run:
        res.log()
        click.echo("logged to MLflow experiment 'ab-tests'")


@experiments.command("srm")
@click.argument("counts", nargs=-1, type=int, required=True)
@click.option("--shares", default=None, help="Planned shares, comma separated (default equal).")
def srm_command(counts, shares) -> None:
    """Sample ratio mismatch check of arm COUNTS (χ², flagged at p < 0.001)."""
    from mktlab.experiments.stats import srm_test

    sh = [float(x) for x in shares.split(",")] if shares else None
    r = srm_test(list(counts), sh)
    click.echo(f"chi2={r.chi2:.4f} p={r.p_value:.4g} {'MISMATCH' if r.mismatch else 'ok'}")


@experiments.command("assign")
@click.argument("ids_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id-col", default="user_id", show_default=True)
@click.option("--experiment", required=True, help="Experiment name (its salt).")
@click.option("--arms", default="control=1,treatment=1", show_default=True, help="arm=weight,...")
@click.option("--traffic", type=float, default=1.0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def assign_command(ids_file, id_col, experiment, arms, traffic, out) -> None:
    """Assign the ids of IDS_FILE to arms (deterministic salted hash); write OUT."""
    from mktlab.errors import require_columns
    from mktlab.experiments.assignment import Experiment
    from mktlab.io import atomic_path, write_parquet

    df = read_table(ids_file, "ids_file")
    require_columns(df, [id_col], table=str(ids_file.name))
    exp = Experiment(experiment, _weights(arms, "--arms"), traffic)
    res = pd.DataFrame({id_col: df[id_col], "arm": exp.assign(df[id_col]).to_numpy()})
    if out.suffix.lower() in (".parquet", ".pq"):
        write_parquet(res, out)
    else:
        with atomic_path(out) as tmp:
            res.to_csv(tmp, index=False)
    click.echo(res["arm"].value_counts(dropna=False).to_string())
    click.echo(f"written to {out}")


@experiments.command("monitor")
@click.argument("data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--metric", "metrics", multiple=True, required=True, help="Metric column(s) to watch."
)
@click.option("--arm", default="arm", show_default=True)
@click.option(
    "--day", default="day", show_default=True, help="Column with each unit's day of entry."
)
@click.option("--control", default="control", show_default=True)
@click.option(
    "--guardrail",
    "guardrails",
    multiple=True,
    help="Metric that must not get worse; 'metric:lower' if lower is better.",
)
@click.option(
    "--stop-on-success", default=None, help="Primary metric: stop when significantly better."
)
@click.option(
    "--n-opt", type=float, default=10_000, show_default=True, help="Planned units per arm."
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option(
    "--log/--no-log",
    "log_run",
    default=False,
    show_default=True,
    help="Log decisions and plots to MLflow.",
)
def monitor_command(
    data_file, metrics, arm, day, control, guardrails, stop_on_success, n_opt, alpha, log_run
) -> None:
    """Replay DATA_FILE look by look with anytime-valid confidence sequences; stop on a
    guardrail breach, a sample ratio mismatch or (optionally) a win."""
    from mktlab.experiments.sequential import Guardrail, monitor

    df = read_table(data_file, "data_file")
    rails = []
    for g in guardrails:
        name, _, direction = g.partition(":")
        if direction not in ("", "higher", "lower"):
            raise ValidationError(f"--guardrail: direction must be 'higher' or 'lower', got {g!r}")
        rails.append(Guardrail(name, higher_is_better=direction != "lower"))
    res = monitor(df, list(metrics), arm=arm, day=day, control=control, alpha=alpha, n_opt=n_opt,
                  guardrails=rails, stop_on_success=stop_on_success)  # fmt: skip
    h = res.history[res.history["valid"]] if not res.history.empty else res.history
    cols = ["day", "metric", "arm", "estimate", "cs_low", "cs_high", "p_always_valid"]
    with pd.option_context("display.width", 200):
        click.echo(
            h[cols].groupby(["metric", "arm"]).tail(1).to_string(index=False)
            if len(h)
            else "no valid looks"
        )
    if res.stopped:
        click.secho(f"STOPPED on {res.stop_day}: {res.reason}", fg="red")
    else:
        click.echo(f"continue: {len(res.decisions)} look(s), no stop rule triggered")
    if log_run:
        res.log()
        click.echo("logged to MLflow experiment 'ab-tests'")


@experiments.command("peeking")
@click.option("--sims", type=int, default=2000, show_default=True)
@click.option("--per-arm", type=int, default=14_000, show_default=True, help="Total units per arm.")
@click.option("--alpha", type=float, default=0.05, show_default=True)
def peeking_command(sims, per_arm, alpha) -> None:
    """A/A simulation: false positives of naive daily peeking vs the confidence sequence."""
    from mktlab.experiments.sequential import peeking_table

    click.echo(
        peeking_table(n_sims=sims, total_per_arm=per_arm, alpha=alpha).to_string(index=False)
    )


ab = experiments  # the issue calls the group `mktlab ab`; same commands
