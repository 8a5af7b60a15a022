"""Drawing the level graph: bands by update frequency, fastest at the bottom.

Input is the `networkx.MultiDiGraph` built by `nlc.graph` (see docs/design.md): nodes
are levels with `kind`, `label`, `tier`, `clock`, `rule`, `objective`, `params`, `repeat`;
edges carry `kind` (flow, generates, optimizes, initializes, backprop) and an optional
`label`. Outputs: SVG/PNG/PDF through matplotlib (no system Graphviz), DOT text and
Mermaid text. Importing this module is cheap: matplotlib is imported inside the drawing
functions, torch never.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nlc.ir.kinds import EDGE_KINDS, NODE_KINDS, EdgeKind, NodeKind

__all__ = ["render", "draw", "layout", "to_dot", "to_mermaid", "human_count", "SUFFIXES"]

SUFFIXES = (".svg", ".png", ".pdf", ".dot", ".mmd")

# node kind -> (fill, border); the kinds and their words: nlc.ir.kinds NODE_KINDS, EDGE_KINDS
NODE_STYLE = {
    NodeKind.LEVEL: ("#dbeafe", "#1d4ed8"),
    NodeKind.ATTENTION: ("#dcfce7", "#15803d"),
    NodeKind.OPTIMIZER: ("#ffedd5", "#c2410c"),
    NodeKind.INPUT: ("#f1f5f9", "#475569"),
    NodeKind.OUTPUT: ("#f1f5f9", "#475569"),
}
NODE_DESC = NODE_KINDS
# edge kind -> (colour, matplotlib linestyle, width, DOT style, description)
_EDGE_LOOK = {
    EdgeKind.FLOW: ("#1f2937", "solid", 1.4, "solid"),
    EdgeKind.GENERATES: ("#7c3aed", (0, (5, 3)), 1.3, "dashed"),
    EdgeKind.OPTIMIZES: ("#ea580c", (0, (1, 2)), 1.2, "dotted"),
    EdgeKind.INITIALIZES: ("#0d9488", "dashdot", 1.2, "dashed"),
    EdgeKind.BACKPROP: ("#dc2626", "solid", 2.6, "bold"),
}
EDGE_STYLE = {k: (*look, EDGE_KINDS[k]) for k, look in _EDGE_LOOK.items()}
_DEFAULT_EDGE = ("#6b7280", "solid", 1.0, "solid", "other")
_EDGE_ORDER = (EdgeKind.OPTIMIZES, EdgeKind.INITIALIZES, EdgeKind.BACKPROP, EdgeKind.GENERATES, EdgeKind.FLOW)  # drawn bottom first

NAME_PT, SUB_PT, LABEL_PT, BAND_PT = 10.5, 7.5, 7.0, 9.5
BOX_H, BAND_H, GAP_X, MARGIN_L, MARGIN_R = 0.62, 1.45, 0.55, 1.7, 0.5


def human_count(n) -> str:
    """33012 -> '33.0k', 1_250_000 -> '1.25M'."""
    n = int(n or 0)
    for div, suf in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{suf}" if v < 100 else f"{v:.0f}{suf}"
    return str(n)


def _name(G, n) -> str:
    return str(G.nodes[n].get("label") or n)


def _subtitle(G, n) -> str:
    a = G.nodes[n]
    kind = a.get("kind", NodeKind.LEVEL)
    parts = [str(a[k]) for k in ("clock", "rule", "objective") if a.get(k)]
    if a.get("params") or kind == NodeKind.LEVEL and "params" in a:
        parts.append(human_count(a.get("params")))
    if int(a.get("repeat") or 1) > 1:
        parts.append(f"×{int(a['repeat'])}")
    return " · ".join(parts)


# ---------------------------------------------------------------- bands

@dataclass
class Band:
    key: str  # "tier0", "input", "output"
    label: str
    caption: str
    nodes: list = field(default_factory=list)


def _clock_label(clocks: list[str], fallback: str) -> str:
    out = []
    for c in clocks:
        c = "frequency 0" if c in ("frozen", "none", "frequency 0") else c
        if c and c not in out:
            out.append(c)
    return ", ".join(out) if out else fallback


def bands(G) -> list[Band]:
    """Bands bottom to top: input, in-context tiers (fastest first), output, outer tiers."""
    tiers: list[list] = [list(t) for t in G.graph.get("tiers") or []]
    placed = {n for t in tiers for n in t}
    for n, a in G.nodes(data=True):  # nodes missing from G.graph["tiers"]: use their attribute
        if n not in placed:
            t = max(0, int(a.get("tier") or 0))  # input/output carry tier -1: any band; they are split out below
            while len(tiers) <= t:
                tiers.append([])
            tiers[t].append(n)
    io = {NodeKind.INPUT: [], NodeKind.OUTPUT: []}
    level_bands, seen = [], set()
    for i, tier in enumerate(tiers):
        members = []
        for n in tier:
            if n not in G or n in seen:  # unknown or listed twice: skip
                continue
            seen.add(n)
            kind = G.nodes[n].get("kind")
            (io[kind] if kind in io else members).append(n)
        if members:
            clocks = [str(G.nodes[n].get("clock") or "") for n in members]
            level_bands.append(Band(f"tier{i}", _clock_label(clocks, f"tier {i}"), f"tier {i}",
                                   members))
    if level_bands:
        level_bands[0].caption += " · fastest"
        if len(level_bands) > 1:
            level_bands[-1].caption += " · slowest"

    def outer(b):
        return all(G.nodes[n].get("kind") == NodeKind.OPTIMIZER or
                   str(G.nodes[n].get("clock") or "").startswith("steps") for n in b.nodes)
    inner = [b for b in level_bands if not outer(b)]
    outer_b = [b for b in level_bands if outer(b)]
    out = []
    if io[NodeKind.INPUT]:
        out.append(Band("input", "input", "data", io[NodeKind.INPUT]))
    out += inner
    if io[NodeKind.OUTPUT]:
        out.append(Band("output", "output", "data", io[NodeKind.OUTPUT]))
    return out + outer_b


# ---------------------------------------------------------------- layout

@dataclass
class Layout:
    pos: dict  # node -> (x, y) centre, inches
    size: dict  # node -> (w, h), inches
    bands: list  # [(Band, y_centre)]
    width: float
    height: float  # of the band area
    margin: float  # left of the boxes: band labels and the frequency arrow


def _band_lines(label: str) -> str:
    """One clock per line, at most three lines (then two clocks a line)."""
    parts = label.split(", ")
    per = 1 if len(parts) <= 3 else -(-len(parts) // 3)
    return "\n".join(", ".join(parts[i:i + per]) for i in range(0, len(parts), per))


def _text_w(text: str, size: float, bold: bool = False) -> float:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path
    prop = FontProperties(family="DejaVu Sans", size=size, weight="bold" if bold else "normal")
    return text_to_path.get_text_width_height_descent(text, prop, ismath=False)[0] / 72.0


def _order(G, bs: list[Band], width: dict, sweeps: int = 4) -> list[list]:
    """Barycentric ordering within bands; optimizer edges are ignored (they reach everything)."""
    rows = [list(b.nodes) for b in bs]
    nbrs: dict = {n: [] for n in G}
    for u, v, k in G.edges(data="kind"):
        if u != v and k not in (EdgeKind.OPTIMIZES, EdgeKind.INITIALIZES):
            nbrs[u].append(v)
            nbrs[v].append(u)

    def xs():
        x = {}
        for row in rows:
            total = sum(width[n] for n in row) + GAP_X * (len(row) - 1)
            cur = -total / 2
            for n in row:
                x[n] = cur + width[n] / 2
                cur += width[n] + GAP_X
        return x

    for s in range(sweeps):
        idx = range(len(rows)) if s % 2 == 0 else range(len(rows) - 1, -1, -1)
        for i in idx:
            x = xs()
            row = rows[i]
            inrow = set(row)

            def bary(n):
                ys = [x[m] for m in nbrs[n] if m not in inrow and m in x]
                return sum(ys) / len(ys) if ys else x[n]
            rows[i] = sorted(row, key=lambda n: (round(bary(n), 6), row.index(n)))
    return rows


def _layout(G) -> Layout:
    bs = bands(G)
    size = {}
    for n in G:
        w = max(_text_w(_name(G, n), NAME_PT, True), _text_w(_subtitle(G, n), SUB_PT)) + 0.3
        size[n] = (max(w, 0.9), BOX_H)
    rows = _order(G, bs, {n: s[0] for n, s in size.items()})
    widths = [sum(size[n][0] for n in r) + GAP_X * (len(r) - 1) for r in rows]
    inner_w = max(widths + [3.0])
    margin = max([MARGIN_L] + [_text_w(t, BAND_PT, True) + 0.6
                               for b in bs for t in _band_lines(b.label).split("\n")])
    pos, placed = {}, []
    for i, (b, row) in enumerate(zip(bs, rows)):
        y = (i + 0.5) * BAND_H
        cur = margin + (inner_w - widths[i]) / 2 + 0.25
        for n in row:
            pos[n] = (cur + size[n][0] / 2, y)
            cur += size[n][0] + GAP_X
        placed.append((b, y))
    return Layout(pos, size, placed, margin + inner_w + 0.5 + MARGIN_R, len(bs) * BAND_H, margin)


def layout(G) -> dict:
    """Node -> (x, y) box centre in inches; y grows upward, so fast tiers have small y."""
    return _layout(G).pos


# ---------------------------------------------------------------- matplotlib

def _bezier_hits(a, b, rad, boxes) -> int:
    """How many sample points of the arc3 curve a->b fall inside the given boxes."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    hits = 0
    for i in range(1, 24):
        t = i / 24
        px = (1 - t) ** 2 * x1 + 2 * (1 - t) * t * cx + t * t * x2
        py = (1 - t) ** 2 * y1 + 2 * (1 - t) * t * cy + t * t * y2
        hits += sum(1 for (bx, by, hw, hh) in boxes if abs(px - bx) < hw and abs(py - by) < hh)
    return hits


def _edge_rads(G, L: Layout) -> dict:
    """Curvature per edge: parallel edges between one pair fan out, and each bundle bends
    as little as it can while going around the other boxes."""
    groups: dict = {}
    for u, v, key in G.edges(keys=True):
        if u != v:
            groups.setdefault(frozenset((u, v)), []).append((u, v, key))
    rad = {}
    for pair, edges in sorted(groups.items(), key=lambda kv: sorted(map(str, kv[0]))):
        edges.sort(key=lambda e: (str(e[0]), str(e[1]), str(e[2])))
        others = [(L.pos[n][0], L.pos[n][1], L.size[n][0] / 2 + 0.06, L.size[n][1] / 2 + 0.06)
                  for n in L.pos if n not in pair]
        # one orientation per pair so opposite edges (u->v, v->u) bend to the same side
        signs = [1 if str(u) <= str(v) else -1 for u, v, _ in edges]
        best = None
        for d in (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6, 0.8, -0.8, 1.0, -1.0):
            rads = [s * (0.1 + 0.2 * i + d) for i, s in enumerate(signs)]
            score = sum(_bezier_hits(L.pos[u], L.pos[v], r, others)
                        for (u, v, _), r in zip(edges, rads))
            if best is None or score < best[0]:
                best = (score, rads)
            if score == 0:
                break
        rad.update(zip(edges, best[1]))
    return rad


def draw(G):
    """The level graph as a matplotlib Figure (not registered with pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.path import Path
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

    L = _layout(G)
    title_h, legend_h = 0.75, 1.05
    W, H = L.width, L.height + title_h + legend_h
    fig = Figure(figsize=(W, H), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, W)
    ax.set_ylim(-legend_h, L.height + title_h)
    ax.set_axis_off()

    for i, (b, y) in enumerate(L.bands):
        io = b.key in ("input", "output")
        face = "#ffffff" if io else ("#f8fafc" if i % 2 else "#eef2f7")
        ax.add_patch(Rectangle((0.1, y - BAND_H / 2 + 0.03), W - 0.2, BAND_H - 0.06,
                               facecolor=face, edgecolor="#cbd5e1", lw=0.6, zorder=0))
        ax.text(0.25, y + 0.08, _band_lines(b.label), ha="left", va="bottom", fontsize=BAND_PT,
                fontweight="bold", color="#334155", zorder=1)
        ax.text(0.25, y - 0.02, b.caption, ha="left", va="top", fontsize=7.5,
                color="#64748b", zorder=1)
    if len(L.bands) > 1:
        ax.annotate("", xy=(L.margin - 0.15, L.height - 0.2), xytext=(L.margin - 0.15, 0.2),
                    arrowprops=dict(arrowstyle="-|>", color="#94a3b8", lw=1.0), zorder=1)
        ax.text(L.margin - 0.24, L.height / 2, "slower updates", rotation=90, ha="center",
                va="center", fontsize=7, color="#94a3b8", zorder=1)

    boxes = {}
    for n, (x, y) in L.pos.items():
        a = G.nodes[n]
        fill, border = NODE_STYLE.get(a.get("kind", NodeKind.LEVEL), NODE_STYLE[NodeKind.LEVEL])
        w, h = L.size[n]
        if int(a.get("repeat") or 1) > 1:  # a collapsed stack of blocks: draw the stack
            for d in (0.1, 0.05):
                ax.add_patch(FancyBboxPatch((x - w / 2 + d, y - h / 2 + d), w, h,
                                            boxstyle="round,pad=0,rounding_size=0.12",
                                            facecolor=fill, edgecolor=border, lw=0.8, zorder=3))
        p = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.12",
                           facecolor=fill, edgecolor=border, lw=1.3, zorder=4)
        ax.add_patch(p)
        boxes[n] = p
        sub = _subtitle(G, n)
        ax.text(x, y + (0.09 if sub else 0), _name(G, n), ha="center", va="center",
                fontsize=NAME_PT, fontweight="bold", color="#0f172a", zorder=5)
        if sub:
            ax.text(x, y - 0.15, sub, ha="center", va="center", fontsize=SUB_PT,
                    color="#334155", zorder=5)

    rads = _edge_rads(G, L)
    rank = {k: i for i, k in enumerate(_EDGE_ORDER)}
    edges = sorted(G.edges(keys=True, data=True), key=lambda e: rank.get(e[3].get("kind"), 9))
    loops: dict = {}
    for u, v, key, a in edges:
        kind = a.get("kind", EdgeKind.FLOW)
        color, ls, lw, _, _ = EDGE_STYLE.get(kind, _DEFAULT_EDGE)
        z = 2 if kind in (EdgeKind.OPTIMIZES, EdgeKind.INITIALIZES) else 6
        alpha = 0.5 if z == 2 else 0.95
        (x1, y1), (x2, y2) = L.pos[u], L.pos[v]
        style = dict(arrowstyle="-|>,head_length=5,head_width=3", color=color, lw=lw,
                     linestyle=ls, alpha=alpha, zorder=z)
        if u == v:  # self-loop on the box's top-right corner; several loops nest outward
            i = loops.get(u, 0)
            loops[u] = i + 1
            w, h = L.size[u]
            xr, yt, r = x1 + w / 2, y1 + h / 2, 0.32 + 0.12 * i
            loop = Path([(xr - 0.42, yt), (xr - 0.5, yt + r * 1.3), (xr + r, yt + r),
                         (xr, y1 + 0.1)], [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4])
            ax.add_patch(FancyArrowPatch(path=loop, shrinkA=0, shrinkB=0, **style))
            lx, ly = xr + 0.05 + 0.3 * r, yt + 0.75 * r
        else:
            rad = rads[(u, v, key)]
            ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), patchA=boxes[u], patchB=boxes[v],
                                         connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2,
                                         **style))
            # midpoint of matplotlib's arc3 quadratic Bezier (axes are 1:1 in inches)
            lx, ly = (x1 + x2) / 2 + rad * (y2 - y1) / 2, (y1 + y2) / 2 - rad * (x2 - x1) / 2
        if a.get("label"):
            ax.text(lx, ly, str(a["label"]), fontsize=LABEL_PT, color=color, ha="center",
                    va="center", zorder=7,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))

    model = G.graph.get("title") or G.graph.get("model") or "model"
    # node params are per layer (x repeat); the optimizer's count is the total, not more parameters
    nparams = sum(int(a.get("params") or 0) * int(a.get("repeat") or 1)
                  for _, a in G.nodes(data=True) if a.get("kind") != NodeKind.OPTIMIZER)
    nlev = sum(1 for _, k in G.nodes(data="kind") if k not in (NodeKind.INPUT, NodeKind.OUTPUT))
    ax.text(0.25, L.height + title_h / 2 + 0.05, str(model), fontsize=15, fontweight="bold",
            ha="left", va="center", color="#0f172a")
    ax.text(W - 0.25, L.height + title_h / 2 + 0.05,
            f"{nlev} levels · {human_count(nparams)} params · fastest at the bottom",
            fontsize=8.5, ha="right", va="center", color="#475569")

    node_kinds = [k for k in NODE_STYLE if any(a == k for _, a in G.nodes(data="kind"))]
    edge_kinds = [k for k in EDGE_STYLE if any(a == k for _, _, a in G.edges(data="kind"))]
    desc = dict(NODE_DESC)
    if NodeKind.INPUT in node_kinds and NodeKind.OUTPUT in node_kinds:
        node_kinds.remove(NodeKind.OUTPUT)
        desc[NodeKind.INPUT] = "input / output"
    handles = [Patch(facecolor=NODE_STYLE[k][0], edgecolor=NODE_STYLE[k][1], label=desc[k])
               for k in node_kinds]
    handles += [Line2D([], [], color=EDGE_STYLE[k][0], linestyle=EDGE_STYLE[k][1],
                       lw=EDGE_STYLE[k][2], label=EDGE_STYLE[k][4]) for k in edge_kinds]
    if handles:
        ax.legend(handles=handles, loc="center", bbox_to_anchor=(W / 2, -legend_h / 2),
                  bbox_transform=ax.transData, ncol=min(4, max(2, len(handles) // 2 + 1)),
                  fontsize=7.5, frameon=False, handlelength=2.6, columnspacing=1.4)
    return fig


# ---------------------------------------------------------------- text formats

def _q(s) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(G) -> str:
    """Graphviz DOT: one rank=same subgraph per band, bottom to top (rankdir=BT)."""
    model = G.graph.get("title") or G.graph.get("model") or "model"
    lines = [f"digraph {_q(model)} {{", "  rankdir=BT; newrank=true; nodesep=0.4; ranksep=0.7;",
             f"  label={_q(model)}; labelloc=t; fontname=Helvetica; fontsize=18;",
             '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=11];',
             "  edge [fontname=Helvetica, fontsize=9];"]
    anchors, band_of = [], {}
    for i, b in enumerate(bands(G)):
        band_of.update((n, i) for n in b.nodes)
        anchor = f"__band_{b.key}"
        anchors.append(anchor)
        lines.append(f"  subgraph {_q('band_' + b.key)} {{")
        lines.append("    rank=same;")
        lines.append(f"    {_q(anchor)} [shape=plaintext, style=\"\", fontsize=10, "
                     f"label={_q(b.label + chr(10) + b.caption)}];")
        for n in b.nodes:
            fill, border = NODE_STYLE.get(G.nodes[n].get("kind", NodeKind.LEVEL), NODE_STYLE[NodeKind.LEVEL])
            lab = _name(G, n) + "\n" + _subtitle(G, n)
            lines.append(f"    {_q(n)} [label={_q(lab.strip())}, fillcolor=\"{fill}\", "
                         f"color=\"{border}\"];")
        lines.append("  }")
    for a, b in zip(anchors, anchors[1:]):  # pins band order: fastest at the bottom
        lines.append(f"  {_q(a)} -> {_q(b)} [style=invis];")
    for u, v, a in G.edges(data=True):
        color, _, lw, style, _ = EDGE_STYLE.get(a.get("kind", EdgeKind.FLOW), _DEFAULT_EDGE)
        extra = f", label={_q(a['label'])}" if a.get("label") else ""
        if band_of.get(v, 0) < band_of.get(u, 0):  # downward edges must not reorder the bands
            extra += ", constraint=false"
        lines.append(f"  {_q(u)} -> {_q(v)} [style={style}, color=\"{color}\", "
                     f"fontcolor=\"{color}\", penwidth={lw}{extra}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


_MERMAID_RESERVED = {"end", "graph", "flowchart", "subgraph", "style", "class", "classdef",
                     "click", "linkstyle", "direction", "call", "href", "default"}


def _mid(n, used: dict) -> str:
    base = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(n)) or "n"
    if not base[0].isalpha() or base.lower() in _MERMAID_RESERVED:
        base = "n_" + base
    key, i = base, 2
    while used.get(key, n) != n:
        key, i = f"{base}_{i}", i + 1
    used[key] = n
    return key


def _mq(s: str) -> str:
    return str(s).replace('"', "#quot;").replace("|", "#124;")


_MERMAID_ARROW = {EdgeKind.FLOW: "-->", EdgeKind.GENERATES: "-.->", EdgeKind.OPTIMIZES: "-.->", EdgeKind.INITIALIZES: "-.->",
                  EdgeKind.BACKPROP: "==>"}


def to_mermaid(G) -> str:
    """Mermaid `flowchart BT`: a subgraph per band, classDef per node kind, linkStyle per edge."""
    used: dict = {}
    ids = {n: _mid(n, used) for n in G}
    title = str(G.graph.get("title") or G.graph.get("model") or "model")
    lines = ["---", "title: " + json.dumps(title, ensure_ascii=False), "---", "flowchart BT"]
    for b in bands(G):
        bid = _mid(f"band_{b.key}", used)
        lines.append(f'  subgraph {bid}["{_mq(b.label)} · {_mq(b.caption)}"]')
        lines.append("    direction LR")
        for n in b.nodes:
            sub = _subtitle(G, n)
            lab = _mq(_name(G, n)) + (f"<br/><small>{_mq(sub)}</small>" if sub else "")
            lines.append(f'    {ids[n]}["{lab}"]:::{G.nodes[n].get("kind", NodeKind.LEVEL)}')
        lines.append("  end")
    styles = []
    for i, (u, v, a) in enumerate(G.edges(data=True)):
        kind = a.get("kind", EdgeKind.FLOW)
        arrow = _MERMAID_ARROW.get(kind, "-->")
        lab = f"|{_mq(a['label'])}|" if a.get("label") else ""
        lines.append(f"  {ids[u]} {arrow}{lab} {ids[v]}")
        color, _, lw, style, _ = EDGE_STYLE.get(kind, _DEFAULT_EDGE)
        dash = {"dotted": ",stroke-dasharray:2 3", "dashed": ",stroke-dasharray:6 3"}.get(style, "")
        if kind == EdgeKind.INITIALIZES:
            dash = ",stroke-dasharray:8 3 2 3"
        styles.append(f"  linkStyle {i} stroke:{color},stroke-width:{lw:g}px{dash}")
    lines += styles
    for k, (fill, border) in NODE_STYLE.items():
        lines.append(f"  classDef {k} fill:{fill},stroke:{border},color:#0f172a")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry point

def render(G, path) -> Path:
    """Write G to `path`; the format follows the suffix (.svg .png .pdf .dot .mmd)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"cannot draw to {path.name!r}: unknown suffix {suffix or '(none)'!r}; "
                         f"supported: {', '.join(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".dot":
        path.write_text(to_dot(G), encoding="utf-8")
    elif suffix == ".mmd":
        path.write_text(to_mermaid(G), encoding="utf-8")
    else:
        import matplotlib
        fig = draw(G)
        meta = {".svg": {"Date": None}, ".pdf": {"CreationDate": None, "ModDate": None},
                ".png": {"Software": None}}[suffix]
        with matplotlib.rc_context({"svg.hashsalt": "nlc", "svg.fonttype": "path",
                                    "pdf.compression": 6}):
            fig.savefig(path, format=suffix[1:], metadata=meta)
    return path
