"""Rendering of a :class:`~mktlab.campaigns.review.Retrospective`: figures and the HTML page.

Kept apart from the measurement in :mod:`mktlab.campaigns.review`; a Retrospective's
``figures``, ``plot``, ``to_html`` and ``_repr_html_`` call these.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from mktlab.io import atomic_path


def figures(r) -> dict[str, Any]:
    """Matplotlib Figures: ``lift`` and, with segments, ``segments``."""
    from matplotlib.figure import Figure

    s = r.summary
    out: dict[str, Any] = {}
    fig = Figure(figsize=(7.5, 3.0), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.3, 1])
    arms = r.tables["arms"]
    y = np.arange(len(arms))
    ax1.errorbar(
        arms["rate"], y, xerr=[arms["rate"] - arms["rate_lo"], arms["rate_hi"] - arms["rate"]],
        fmt="o", capsize=4, color="tab:blue",
    )  # fmt: skip
    ax1.set_yticks(y, arms["arm"])
    ax1.set_xlabel("conversion rate (95% CI)")
    ax1.set_ylim(-0.6, len(arms) - 0.4)
    lo, hi = s["lift"] - s["lift_lo"], s["lift_hi"] - s["lift"]
    ax2.errorbar([s["lift"]], [0], xerr=[[lo], [hi]], fmt="o", capsize=6, color="tab:green")
    ax2.axvline(0, color="grey", lw=1, ls="--")
    ax2.set_yticks([0], ["lift"])
    ax2.set_xlabel("treated − holdout (95% CI)")
    out["lift"] = fig
    seg = r.tables.get("segments")
    if seg is not None and len(seg):
        fig = Figure(figsize=(7.5, 0.5 + 0.45 * len(seg)), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(seg))
        colors = np.where(seg["lift_lo"] > 0, "tab:green",
                          np.where(seg["lift_hi"] < 0, "tab:red", "tab:grey"))  # fmt: skip
        for i in range(len(seg)):
            r = seg.iloc[i]
            ax.errorbar(
                [r["lift"]], [i], xerr=[[r["lift"] - r["lift_lo"]], [r["lift_hi"] - r["lift"]]],
                fmt="o", capsize=4, color=colors[i],
            )  # fmt: skip
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(y, [f"{a} ({q})" for a, q in zip(seg["segment"], seg["quadrant"])])
        ax.invert_yaxis()
        ax.set_xlabel("uplift: treated − holdout conversion rate (95% CI)")
        out["segments"] = fig
    return out


def plot(r) -> Any:
    """The lift figure (and segments below it in a notebook, via ``display``)."""
    figs = figures(r)
    try:
        from IPython.display import display

        for f in list(figs.values())[1:]:
            display(f)
    except ImportError:  # outside IPython the caller has figures()
        pass
    return figs["lift"]


# -- HTML -------------------------------------------------------------------------
def headline(r) -> list[tuple[str, str]]:
    s = r.summary

    def pct(v):
        return "n/a" if v is None or not math.isfinite(v) else f"{v:+.2%}"

    def num(v, fmt="{:,.2f}"):
        return "n/a" if v is None or not math.isfinite(v) else fmt.format(v)

    roi = (
        f"{num(s['roi'], '{:+.2f}')} [{num(s['roi_lo'], '{:+.2f}')}, {num(s['roi_hi'], '{:+.2f}')}]"
        if s.get("roi") is not None
        else "n/a (no revenue)"
    )
    return [
        ("Users (not held out / holdout)", f"{s['n_treated']:,} / {s['n_holdout']:,}"),
        ("Conversion (not held out / holdout)",
         f"{s['rate_treated']:.2%} / {s['rate_holdout']:.2%}"),
        ("Lift (absolute, 95% CI)", f"{pct(s['lift'])} [{pct(s['lift_lo'])}, {pct(s['lift_hi'])}]"),
        ("Lift (relative, 95% CI)",
         f"{pct(s['rel_lift'])} [{pct(s['rel_lift_lo'])}, {pct(s['rel_lift_hi'])}]"),
        ("p-value", f"{s['p_value']:.3g}"),
        ("Incremental conversions",
         f"{num(s['incremental_conversions'], '{:,.1f}')} "
         f"[{num(s['incremental_conversions_lo'], '{:,.1f}')}, "
         f"{num(s['incremental_conversions_hi'], '{:,.1f}')}]"),
        ("Incremental revenue", f"{num(s['incremental_revenue'])} "
         f"[{num(s['incremental_revenue_lo'])}, {num(s['incremental_revenue_hi'])}]"),
        ("Spend", num(s["spend"])),
        ("ROI (95% CI)", roi),
    ]  # fmt: skip


def html_body(r) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in headline(r))
    parts = [f"<h1>{e(r.title)}</h1>", f'<table class="headline">{rows}</table>']
    if r.notes:
        parts.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in r.notes)
                     + "</ul>")  # fmt: skip
    for name, fig in figures(r).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        b64 = base64.b64encode(buf.getvalue()).decode("ascii")
        parts.append(f'<figure><img alt="{e(name)}" src="data:image/png;base64,{b64}"/></figure>')
    titles = {"arms": "Arms", "segments": "Uplift by segment", "quadrants": "Quadrants",
              "attribution": "Attribution of the conversions",
              "prediction": "Sandbox prediction and what happened"}  # fmt: skip
    for name, df in r.tables.items():
        parts.append(f"<h2>{e(titles.get(name, name))}</h2>")
        parts.append(df.to_html(index=False, float_format=lambda v: f"{v:,.4g}", border=0,
                                classes="data", na_rep="–"))  # fmt: skip
    return "\n".join(parts)


def to_html(r, path: str | Path) -> Path:
    """Write a r-contained HTML page (plots inline); atomically; return the path."""
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0}th,td{padding:3px 10px;"
        "border-bottom:1px solid #ddd;text-align:right}table.headline th{text-align:left}"
        "ul.notes{color:#8a5300}img{max-width:100%}"
    )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(r.title)}"
        f"</title><style>{style}</style></head><body>{html_body(r)}</body></html>"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)
