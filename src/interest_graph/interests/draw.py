"""Draw one user's neighbourhood: the user, their interests and the items in them.

Three columns, left to right: the user, their strongest interests (edge width =
the user's weight on it) and, per interest, the items that score best for the
user (edge width = the item's score, relative to the others shown). A PNG from
matplotlib's Agg canvas, and a self-contained interactive HTML page from plotly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interest_graph.interests.graph import InterestGraph, explain_user
from interest_graph.logs import get_logger

log = get_logger("interests.draw")

COLUMNS = {"user": 0.0, "interest": 1.0, "item": 2.0}
COLOURS = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)
USER_COLOUR = "#222222"
MAX_TEXT = 42
MIN_BLOCK_ROWS = 2  # room for an interest's label box
BLOCK_GAP = 0.6


@dataclass(frozen=True)
class _Node:
    kind: str
    x: float
    y: float
    text: str
    hover: str
    colour: str


@dataclass(frozen=True)
class _Edge:
    source: _Node
    target: _Node
    width: float
    colour: str


def draw_user_neighbourhood(
    graph: InterestGraph,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    user_id: str,
    png_path: str | Path,
    html_path: str | Path,
    n_interests: int = 5,
    items_per_interest: int = 3,
) -> tuple[Path, Path]:
    """Draw a user → interests → items picture as a PNG and an interactive page.

    Args:
        graph: the interest graph.
        user_vectors: the user vectors the graph was built from.
        item_vectors: the item vectors the graph was built from.
        user_id: the user to draw.
        png_path: where the PNG goes (folder created if missing).
        html_path: where the HTML page goes (folder created if missing); it
            embeds plotly.js, so it works offline.
        n_interests: interests drawn.
        items_per_interest: items drawn per interest.

    Returns:
        ``(png_path, html_path)``.

    Raises:
        KeyError: the user is not in the graph.
    """
    interests = explain_user(
        graph, user_vectors, item_vectors, user_id, n_interests, items_per_interest
    )
    nodes, edges = _layout(user_id, interests)
    title = f"Interests of user {user_id}"
    png = _draw_png(nodes, edges, title, Path(png_path))
    html = _draw_html(nodes, edges, title, Path(html_path))
    log.info("drew user %s's %d interests to %s", user_id, len(interests), png)
    return png, html


def _layout(
    user_id: str, interests: list[dict[str, Any]]
) -> tuple[list[_Node], list[_Edge]]:
    """Nodes in three columns: items top to bottom, in one block per interest."""
    scores = [item["score"] for i in interests for item in i["items"]]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    nodes: list[_Node] = []
    edges: list[_Edge] = []
    parents: list[tuple[_Node, float]] = []
    top = 0.0
    for index, interest in enumerate(interests):
        colour = COLOURS[index % len(COLOURS)]
        height = max(len(interest["items"]), MIN_BLOCK_ROWS)
        parent, children = _interest_block(interest, colour, top, height)
        parents.append((parent, float(interest["weight"])))
        nodes += [parent, *children]
        for child, item in zip(children, interest["items"], strict=True):
            share = (item["score"] - low) / (high - low) if high > low else 1.0
            edges.append(_Edge(parent, child, 0.8 + 3.2 * share, colour))
        top += height + BLOCK_GAP
    user_y = float(np.mean([n.y for n, _ in parents])) if parents else 0.0
    user = _Node(
        "user", COLUMNS["user"], user_y, f"user {user_id}", user_id, USER_COLOUR
    )
    nodes.insert(0, user)
    edges[:0] = [_Edge(user, n, 1.0 + 10.0 * w, n.colour) for n, w in parents]
    return nodes, edges


def _interest_block(
    interest: dict[str, Any], colour: str, top: float, height: int
) -> tuple[_Node, list[_Node]]:
    """An interest node centred on its items, which are centred in the block."""
    items = interest["items"]
    first = top + (height - len(items)) / 2
    children = [
        _Node(
            "item",
            COLUMNS["item"],
            -(first + row),
            f"{_short(item['title'] or item['item_id'])}  ({item['score']:.2f})",
            f"{item['title'] or item['item_id']}<br>item {item['item_id']}<br>"
            f"score {item['score']:.3f}",
            colour,
        )
        for row, item in enumerate(items)
    ]
    parent = _Node(
        "interest",
        COLUMNS["interest"],
        -(top + (height - 1) / 2),
        f"{_short(interest['label'])}\n{interest['weight']:.0%}",
        f"{interest['label']}<br>{interest['interest_id']}<br>"
        f"weight {interest['weight']:.3f}",
        colour,
    )
    return parent, children


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _draw_png(nodes: list[_Node], edges: list[_Edge], title: str, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    depth = max((-n.y for n in nodes), default=0.0)
    figure = Figure(figsize=(13, max(4.0, 0.55 * (depth + 1) + 1.5)), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for edge in edges:
        axes.plot(
            [edge.source.x, edge.target.x],
            [edge.source.y, edge.target.y],
            color=edge.colour,
            linewidth=edge.width,
            alpha=0.55,
            solid_capstyle="round",
            zorder=1,
        )
    for node in nodes:
        _draw_png_node(axes, node)
    axes.set_xlim(-0.75, 3.6)
    axes.set_ylim(-depth - 0.8, 0.8)
    axes.set_axis_off()
    axes.set_title(title, fontsize=13, loc="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def _draw_png_node(axes: Any, node: _Node) -> None:
    size = {"user": 260, "interest": 180, "item": 60}[node.kind]
    axes.scatter([node.x], [node.y], s=size, color=node.colour, zorder=3)
    if node.kind == "item":
        axes.text(node.x + 0.06, node.y, node.text, va="center", ha="left", fontsize=9)
        return
    if node.kind == "user":
        axes.text(
            node.x - 0.08, node.y, node.text, va="center", ha="right", fontsize=11
        )
        return
    axes.text(
        node.x,
        node.y + 0.22,
        node.text,
        va="bottom",
        ha="center",
        fontsize=9,
        bbox={
            "boxstyle": "round,pad=0.3",
            "facecolor": "white",
            "edgecolor": node.colour,
        },
        zorder=4,
    )


def _draw_html(nodes: list[_Node], edges: list[_Edge], title: str, path: Path) -> Path:
    import plotly.graph_objects as go

    figure = go.Figure()
    for edge in edges:
        figure.add_trace(
            go.Scatter(
                x=[edge.source.x, edge.target.x],
                y=[edge.source.y, edge.target.y],
                mode="lines",
                line={"width": edge.width, "color": edge.colour},
                opacity=0.55,
                hoverinfo="skip",
                showlegend=False,
            )
        )
    positions = {
        "user": "middle left",
        "interest": "top center",
        "item": "middle right",
    }
    for kind, position in positions.items():
        group = [n for n in nodes if n.kind == kind]
        figure.add_trace(
            go.Scatter(
                x=[n.x for n in group],
                y=[n.y for n in group],
                mode="markers+text",
                name=kind,
                marker={
                    "size": 18 if kind != "item" else 10,
                    "color": [n.colour for n in group],
                },
                text=[n.text.replace("\n", " · ") for n in group],
                textposition=position,
                hovertext=[n.hover for n in group],
                hoverinfo="text",
            )
        )
    figure.update_layout(
        title=title,
        template="plotly_white",
        xaxis={"visible": False, "range": [-0.9, 3.6]},
        yaxis={"visible": False},
        height=max(420, 60 * (len(nodes) + 1)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path
