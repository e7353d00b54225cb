"""``mktlab uplift``: train the learners and register the champion; evaluate it."""

from __future__ import annotations

import json

import click

from mktlab.uplift.learners import LEARNERS


def _data_kwargs(
    data: str, outcome: str | None, arms: tuple[str, ...], campaign: str, n_rows: int | None
) -> dict:
    if data == "hillstrom":
        kw: dict = {"arms": arms or ("Womens E-Mail",)}
        if outcome:
            kw["outcome"] = outcome
        return kw
    if data == "world":
        kw = {"campaign_id": campaign}
        if outcome:
            kw["outcome"] = outcome
        return kw
    return {"n": n_rows or 20_000}


@click.group()
def uplift() -> None:
    """Uplift models: train, select a champion, evaluate."""


@uplift.command()
@click.option(
    "--data",
    "source",
    type=click.Choice(["hillstrom", "world", "simulated"]),
    default="hillstrom",
    show_default=True,
)
@click.option(
    "--outcome",
    default=None,
    help="Outcome column (hillstrom: visit|conversion|spend; world: converted|revenue).",
)
@click.option(
    "--arm", "arms", multiple=True, help="Hillstrom arm(s) against No E-Mail (repeat for several)."
)
@click.option("--campaign", default="C001", show_default=True, help="World campaign id.")
@click.option("--rows", "n_rows", type=int, default=None, help="Rows of simulated data.")
@click.option(
    "--learner",
    "learners",
    multiple=True,
    type=click.Choice(sorted(LEARNERS)),
    help="Learners to compare (default all).",
)
@click.option("--folds", "n_splits", type=int, default=5, show_default=True)
@click.option("--n-estimators", type=int, default=100, show_default=True)
@click.option("--forest-estimators", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--metric", default="qini", show_default=True, help="Champion criterion.")
@click.option("--no-register", is_flag=True, help="Log the run but do not register the champion.")
def train(
    source,
    outcome,
    arms,
    campaign,
    n_rows,
    learners,
    n_splits,
    n_estimators,
    forest_estimators,
    seed,
    metric,
    no_register,
) -> None:
    """Cross-validate the learners, log to MLflow and register uplift@champion."""
    from mktlab.uplift.train import load_data
    from mktlab.uplift.train import train as run_train

    data = load_data(source, **_data_kwargs(source, outcome, arms, campaign, n_rows))
    res = run_train(
        data, learners=list(learners) or None, n_splits=n_splits, n_estimators=n_estimators,
        forest_estimators=forest_estimators, seed=seed, metric=metric, register=not no_register,
    )  # fmt: skip
    click.echo(res.cv.table.round(4).to_string())
    click.echo(f"champion: {res.champion}  (run {res.run_id}, version {res.model_version})")
    click.echo(json.dumps({k: round(v, 5) for k, v in res.metrics.items()}, indent=2))


@uplift.command()
@click.option(
    "--data",
    "source",
    type=click.Choice(["hillstrom", "world", "simulated"]),
    default="hillstrom",
    show_default=True,
)
@click.option("--outcome", default=None)
@click.option("--arm", "arms", multiple=True)
@click.option("--campaign", default="C001", show_default=True)
@click.option("--rows", "n_rows", type=int, default=None)
@click.option("--model", "model_name", default="uplift", show_default=True)
@click.option("--alias", default="champion", show_default=True)
@click.option("--splits", "n_repeats", type=int, default=0, show_default=True,
              help="Also retrain the champion's learner on this many stratified 70/30 splits and report CIs.")  # fmt: skip
def evaluate(source, outcome, arms, campaign, n_rows, model_name, alias, n_repeats) -> None:
    """Score data with the registered model and print Qini, AUUC and uplift@30% with CIs.

    Scoring the training data flatters the model; ``--splits 5`` gives the honest
    held-out figures (the Hillstrom protocol).
    """
    from sklearn.base import clone

    from mktlab.uplift.selection import repeated_split_report
    from mktlab.uplift.train import evaluate_model, load_champion, load_data

    data = load_data(source, **_data_kwargs(source, outcome, arms, campaign, n_rows))
    model = load_champion(model_name, alias)
    click.echo(f"{model_name}@{alias}: {model!r}")
    click.echo(
        json.dumps({k: round(v, 5) for k, v in evaluate_model(model, data).items()}, indent=2)
    )
    if n_repeats:
        per, summary = repeated_split_report(data, clone(model.learner), n_repeats=n_repeats)
        click.echo(per.round(4).to_string())
        click.echo(json.dumps({k: round(v, 5) for k, v in summary.items()}, indent=2))
