"""``mktlab attribution``: attribute conversions from a path file or the synthetic world."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from mktlab.errors import DataError, ValidationError
from mktlab.io import read_table


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in df.columns), None)


def _paths_from_file(path: Path, sep: str, lookback_days, *, cut_at_conversion: bool):
    """An aggregated path table, or (no path column) a one-row-per-touch log."""
    from mktlab.attribution.paths import Paths

    df = read_table(path, "--paths")
    if _first(df, ("path", "paths", "channel_path")) is not None:
        return Paths.from_frame(df, sep=sep)
    ts_col = _first(df, ("ts", "time", "timestamp", "date"))
    if ts_col is None or "channel" not in df.columns:
        raise DataError(
            f"--paths {path.name}: expected a 'path' column (aggregated paths) or touch rows "
            f"with 'channel' and a time column; got {list(df.columns)}"
        )
    return Paths.from_touches(
        df,
        ts_col=ts_col,
        converted_col=_first(df, ("converted", "conversion")) or "converted",
        value_col=_first(df, ("value", "conversion_value", "revenue")) or "value",
        lookback_days=lookback_days,
        cut_at_conversion=cut_at_conversion,
    )


def load_world_paths(
    world_dir: Path | None = None,
    *,
    lookback_days: float | None = None,
    cut_at_conversion: bool = True,
):
    """Journeys of the synthetic world (``touches`` + ``conversions``) and its truth.

    Returns ``(paths, truth)`` where ``truth`` is ``channel_truth`` indexed by channel
    (or ``None`` if the world has none).
    """
    from mktlab.attribution.paths import Paths
    from mktlab.config import settings

    d = Path(world_dir) if world_dir is not None else settings().world_dir
    touches_file = d / "touches.parquet"
    if not touches_file.exists():
        raise DataError(
            f"no touches at {touches_file}; generate the world first (`mktlab world ...`) "
            "or pass --paths FILE"
        )
    touches = pd.read_parquet(touches_file)
    conv_file = d / "conversions.parquet"
    conversions = pd.read_parquet(conv_file) if conv_file.exists() else None
    paths = Paths.from_touches(
        touches, conversions, lookback_days=lookback_days, cut_at_conversion=cut_at_conversion
    )
    truth_file = d / "channel_truth.parquet"
    truth = pd.read_parquet(truth_file).set_index("channel") if truth_file.exists() else None
    return paths, truth


@click.group()
def attribution() -> None:
    """Multi-touch attribution: heuristics, Markov removal effects, Shapley."""


@attribution.command("run")
@click.option(
    "--paths",
    "paths_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Aggregated path table (path, conversions[, value, nulls]) or a touch log (id, ts, channel, conversion[, value]); default: the world's touches.",
)
@click.option(
    "--sep",
    default=" > ",
    show_default=True,
    help="Separator inside the path column ('auto' guesses).",
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    default=("all",),
    show_default=True,
    type=click.Choice(
        [
            "markov",
            "shapley",
            "all",
            "heuristics",
            "first_touch",
            "last_touch",
            "linear",
            "time_decay",
            "position_based",
        ]
    ),
    help="Method(s) to run; repeat the flag for several.",
)
@click.option("--order", default=1, show_default=True, type=int, help="Markov chain order.")
@click.option(
    "--lookback-days", type=float, default=None, help="Touch logs: lookback window in days."
)
@click.option("--no-cut", is_flag=True, help="Touch logs: keep touches after the conversion.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the channel x method table (.csv or .parquet).",
)
@click.option("--log/--no-log", default=False, show_default=True, help="Log the run to MLflow.")
@click.option(
    "--register",
    is_flag=True,
    help="Register the model as 'attribution' @champion (implies --log).",
)
def run(paths_file, sep, methods, order, lookback_days, no_cut, out, log, register) -> None:
    """Attribute conversions to channels and print the channel x method table."""
    from mktlab.attribution.compare import attribute

    truth = None
    if paths_file is not None:
        paths = _paths_from_file(paths_file, sep, lookback_days, cut_at_conversion=not no_cut)
    else:
        paths, truth_df = load_world_paths(
            lookback_days=lookback_days, cut_at_conversion=not no_cut
        )
        if truth_df is not None and "true_incremental_conversions" in truth_df.columns:
            truth = truth_df["true_incremental_conversions"]
    result = attribute(paths, list(methods), markov_order=order, sep=sep)
    click.echo(f"{paths!r}")
    table = result.conversions.round(3)
    if result.markov is not None:
        table.insert(0, "removal_effect", result.markov.removal_effects_.round(4))
    click.echo(table.to_string())
    if truth is not None:
        click.echo("\nagreement with channel_truth.true_incremental_conversions:")
        click.echo(result.compare_to(truth).to_string())
    if out is not None:
        from mktlab.io import atomic_path

        with atomic_path(out) as tmp:
            if out.suffix.lower() in (".parquet", ".pq"):
                table.reset_index().to_parquet(tmp)
            else:
                table.to_csv(tmp)
        click.echo(f"wrote {out}")
    if log or register:
        from mktlab.attribution.model import log_attribution

        served = "markov" if result.markov is not None else "shapley"
        if result.markov is None and result.shapley is None:
            raise ValidationError("--log: the served model needs --method markov, shapley or all")
        info = log_attribution(result, method=served, truth=truth, register=register)
        click.echo(
            f"logged run {info['run_id']} model {info['model_uri']}"
            + (f" registered attribution v{info['version']} @champion" if info["version"] else "")
        )
