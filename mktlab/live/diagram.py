"""Pictures of a journey: a matplotlib figure laid out left to right, and Mermaid text.

The layout needs no graphviz: a node's column is its BFS depth from the entry, its row
its order of discovery in that column. Edges to the same or an earlier column (loops)
are drawn as arcs so they do not run through boxes.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

from mktlab.live.journey import Journey

_COLOURS = {
    "entry": "#cfe8cf", "delay": "#fde9c4", "wait": "#fde9c4", "split": "#d8e2f3",
    "coupon": "#f6d5d5", "message": "#f6d5d5", "update": "#ece0f3", "rate_limit": "#eeeeee",
    "exit": "#dddddd",
}  # fmt: skip
_MERMAID_SHAPES = {"entry": ("([", "])"), "split": ("{", "}"), "exit": ("((", "))")}
_MERMAID_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "click", "default"}


def layout(journey: Journey) -> dict[str, tuple[int, int]]:
    """``node id -> (column, row)``: the column is the node's depth from the entry.

    Depth is the longest path from the entry once the edges that close a loop (found by
    a depth-first walk) are set aside, so every other edge points to the right.
    """
    succ = {n.id: list(dict.fromkeys(n.targets().values())) for n in journey.nodes}
    entry = journey.entry.id
    back: set[tuple[str, str]] = set()
    mark = {entry: 1}  # 1 = on the current path, 2 = finished
    stack = [(entry, iter(succ[entry]))]
    while stack:
        nid, it = stack[-1]
        t = next(it, None)
        if t is None:
            mark[nid] = 2
            stack.pop()
        elif mark.get(t) == 1:
            back.add((nid, t))
        elif t not in mark:
            mark[t] = 1
            stack.append((t, iter(succ[t])))
    indeg = {nid: 0 for nid in succ}
    for nid, ts in succ.items():
        for t in ts:
            indeg[t] += (nid, t) not in back
    depth, order = {entry: 0}, [entry]
    for nid in order:  # a breadth-first walk in topological order (grows as it goes)
        for t in succ[nid]:
            if (nid, t) in back:
                continue
            depth[t] = max(depth.get(t, 0), depth[nid] + 1)
            indeg[t] -= 1
            if indeg[t] == 0:
                order.append(t)
    rows: dict[int, int] = {}
    pos = {}
    for nid in order:
        c = depth[nid]
        pos[nid] = (c, rows.get(c, 0))
        rows[c] = rows.get(c, 0) + 1
    return pos


def _label(journey: Journey, nid: str, counts: Mapping[str, int] | None) -> str:
    n = journey.node(nid)
    text = f"{n.type}: {nid}"
    if n.summary():
        text += "\n" + textwrap.fill(n.summary(), 26)
    if counts is not None:
        text += f"\nn = {int(counts.get(nid, 0)):,}"
    return text


def draw(journey: Journey, ax: Any = None, *, counts: Mapping[str, int] | None = None):
    """Draw ``journey`` as boxes and labelled arrows; return the matplotlib Figure.

    Parameters
    ----------
    journey : Journey
    ax : matplotlib Axes, optional
        Draw into it; by default a new Figure (no pyplot state) sized to the journey.
    counts : mapping of node id to int, optional
        Users per node (e.g. :meth:`~mktlab.live.journey_sim.SimResult.node_counts`),
        shown in each box.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    pos = layout(journey)
    n_cols = max(c for c, _ in pos.values()) + 1
    per_col = [sum(1 for c, _ in pos.values() if c == k) for k in range(n_cols)]
    tallest = max(per_col)
    if ax is None:
        fig = Figure(figsize=(max(4.0, 2.1 * n_cols), max(2.5, 1.5 * tallest + 0.8)))
        ax = fig.add_subplot()
    fig = ax.figure

    def xy(nid: str) -> tuple[float, float]:
        c, r = pos[nid]
        return 3.0 * c, (per_col[c] - 1) / 2 - r  # centre each column vertically

    boxes = {}
    for nid in pos:
        x, y = xy(nid)
        kind = journey.node(nid).type
        boxes[nid] = ax.text(x, y, _label(journey, nid, counts), ha="center", va="center",
                             fontsize=8, gid=f"node:{nid}", zorder=3,
                             bbox={"boxstyle": "round,pad=0.4", "ec": "#555555",
                                   "fc": _COLOURS.get(kind, "white")})  # fmt: skip
    for src, label, dst in journey.edges():
        (x0, y0), (x1, y1) = xy(src), xy(dst)
        span = pos[dst][0] - pos[src][0]
        forward = span > 0
        # arrows run between the boxes' edges (fractions of each text box); long and
        # backward edges arc above the row so they do not run through other boxes
        a, b = ((1.0, 0.5), (0.0, 0.5)) if forward else ((0.5, 1.0), (0.5, 1.0))
        rad = 0.0 if span == 1 or (forward and y0 != y1) else -0.3
        ax.annotate("", xy=b, xycoords=boxes[dst], xytext=a, textcoords=boxes[src], zorder=2,
                    arrowprops={"arrowstyle": "-|>", "color": "#444444", "shrinkA": 6,
                                "shrinkB": 6, "connectionstyle": f"arc3,rad={rad}"})  # fmt: skip
        if label != "next":
            f = 0.5 if span == 1 else 0.2  # near the source when the edge is long
            mx, my = x0 + f * (x1 - x0), y0 + f * (y1 - y0) + (0.12 if rad == 0 else 0.5)
            ax.text(mx, my, label, ha="center", va="bottom", fontsize=7, color="#224488",
                    gid=f"edge:{src}:{label}")  # fmt: skip
    ax.set_xlim(-1.6, 3.0 * (n_cols - 1) + 1.6)
    ax.set_ylim(-(tallest / 2) - 0.6, tallest / 2 + 0.6)
    ax.set_axis_off()
    ax.set_title(f"{journey.name} v{journey.version}", fontsize=10)
    return fig


def _mermaid_id(nid: str, used: dict[str, str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", nid)
    if base.lower() in _MERMAID_RESERVED or base[:1].isdigit():
        base = f"n_{base}"
    out, k = base, 1
    while out in used.values() and used.get(nid) != out:
        k += 1
        out = f"{base}_{k}"
    used[nid] = out
    return out


def _mermaid_text(text: str) -> str:
    for a, b in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("\n", "<br/>")):
        text = text.replace(a, b)
    return text


def to_mermaid(journey: Journey, *, counts: Mapping[str, int] | None = None) -> str:
    """The journey as a Mermaid ``flowchart LR`` (renders in GitHub, GitLab, notebooks)."""
    used: dict[str, str] = {}
    ids = {n.id: _mermaid_id(n.id, used) for n in journey.nodes}
    lines = ["flowchart LR"]
    for n in journey.nodes:
        left, right = _MERMAID_SHAPES.get(n.type, ("[", "]"))
        lines.append(
            f'    {ids[n.id]}{left}"{_mermaid_text(_label(journey, n.id, counts))}"{right}'
        )
    for src, label, dst in journey.edges():
        arrow = "-->" if label == "next" else f"-->|{_mermaid_text(label)}|"
        lines.append(f"    {ids[src]} {arrow} {ids[dst]}")
    return "\n".join(lines) + "\n"
