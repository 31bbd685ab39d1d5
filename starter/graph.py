"""Pictures of a definition's DAG: an SVG drawing and Mermaid text, coloured by step status
when they show a run.

Pure Python, no layout engine (a fresh machine has no graphviz). The layout is the layered
(Sugiyama) kind:

1. **Layers.** A step's layer is the longest path to it from the roots over ``needs`` (and
   over fallback edges, so a fallback sits below the step it stands in for).
2. **Long edges** get a virtual node in every layer they cross, so they route between boxes.
3. **Order** within layers: barycenter sweeps down and up, keeping the order with the fewest
   crossings (counted exactly, with a Fenwick tree).
4. **x**: each node is pulled towards the mean x of its neighbours, sweep by sweep; the
   nearest positions that keep the order and the gaps are found by weighted isotonic
   regression (pool adjacent violators), which is linear in the layer's size.
5. **Edges** are smooth cubic paths through their virtual nodes, ending in an arrowhead;
   fallback edges are dashed.

Each sweep is O(V + E) (crossing counts O(E log V)); a 1,000-step chain lays out and draws in
a few tens of milliseconds. The same input always gives the same bytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from xml.sax.saxutils import escape, quoteattr

from workflows.definition import Definition, Fallback
from workflows.types import StepProgress, StepStatus

# --- what is drawn -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Palette:
    """The colours of a box."""

    fill: str
    stroke: str
    text: str = "#0f172a"


STATUS_COLOURS: dict[str, Palette] = {
    StepStatus.PENDING: Palette("#f1f5f9", "#94a3b8", "#334155"),
    StepStatus.RUNNING: Palette("#dbeafe", "#2563eb"),
    StepStatus.SUCCEEDED: Palette("#dcfce7", "#16a34a"),
    StepStatus.FAILED: Palette("#fee2e2", "#dc2626"),
    StepStatus.SKIPPED: Palette("#fafafa", "#d4d4d8", "#71717a"),
    StepStatus.NEEDS_ATTENTION: Palette("#fef3c7", "#d97706"),
    StepStatus.CANCELLED: Palette("#d4d4d8", "#52525b", "#27272a"),
}
"""The colours of each step status, in the order the legend shows them."""
PLAIN = Palette("#ffffff", "#475569")
"""A box of a definition (no run), or of a status this module does not know."""
FALLBACK_EDGE = "#b45309"
EDGE = "#64748b"


@dataclass(frozen=True)
class Node:
    """One step as drawn.

    Attributes:
        id: The step id.
        kind: Its ``uses``.
        for_each: Whether it runs once per item.
        fallback: Whether it runs only as some step's fallback.
        status: Its status in a run; None when the picture shows a definition.
        attempts: Attempts so far (runs).
        items_total: Items of a ``for_each`` (runs, once known).
        items_done: Items finished.
        items_failed: Items that failed.
        stood_in: The fallback step that stood in for it (runs).
        error: The last error (shown as a tooltip).
    """

    id: str
    kind: str
    for_each: bool = False
    fallback: bool = False
    status: str | None = None
    attempts: int = 0
    items_total: int | None = None
    items_done: int | None = None
    items_failed: int = 0
    stood_in: str | None = None
    error: str | None = None

    def lines(self) -> list[str]:
        """The label's lines: id, kind, then (runs) status and attempts, items, fallback."""
        kind = self.kind
        if self.for_each:
            kind += " · for_each"
        if self.fallback:
            kind += " · fallback"
        lines = [self.id, kind]
        if self.status is not None:
            state = self.status
            if self.attempts:
                state += f" · {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
            lines.append(state)
            if self.items_total is not None:
                items = f"items {self.items_done or 0}/{self.items_total}"
                if self.items_failed:
                    items += f", {self.items_failed} failed"
                lines.append(items)
            if self.stood_in:
                lines.append(f"via fallback {self.stood_in}")
        return lines

    def tooltip(self) -> str:
        """The box's tooltip: every line, and the last error."""
        text = "\n".join(self.lines())
        return f"{text}\n{self.error}" if self.error else text


@dataclass(frozen=True)
class Edge:
    """``source`` comes before ``target``: a need, or (dashed) a fallback that stands in."""

    source: str
    target: str
    fallback: bool = False


@dataclass(frozen=True)
class Graph:
    """What a picture shows: nodes in definition order, edges, and a title."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    title: str = ""
    coloured: bool = False
    """Whether the nodes carry statuses (a run), so the legend shows the status colours."""


def graph_of(
    definition: Definition,
    steps: Iterable[StepProgress] | None = None,
    *,
    title: str | None = None,
) -> Graph:
    """The graph of a definition, with each step's state when ``steps`` (a run's progress)
    is given.

    Args:
        definition: The definition (for a run: the version it pinned).
        steps: The run's ``progress`` steps; steps it does not name are ``pending``.
        title: Shown above the picture; the definition's name by default.
    """
    progress = {s.step: s for s in steps} if steps is not None else None
    fallbacks = definition.fallback_steps()
    nodes = []
    for sid, step in definition.steps.items():
        node = Node(
            id=sid,
            kind=step.uses,
            for_each=step.for_each is not None,
            fallback=sid in fallbacks,
        )
        if progress is not None:
            state = progress.get(sid)
            if state is None:
                node = replace(node, status=StepStatus.PENDING.value)
            else:
                node = replace(
                    node,
                    status=str(state.status.value),
                    attempts=state.attempts,
                    items_total=state.items_total,
                    items_done=state.items_done,
                    items_failed=len(state.items_failed or ()),
                    stood_in=state.fallback,
                    error=state.error,
                )
        nodes.append(node)
    edges: list[Edge] = []
    for sid, step in definition.steps.items():
        for need in dict.fromkeys(step.needs):
            if need in definition.steps and need != sid:
                edges.append(Edge(need, sid))
    for sid, step in definition.steps.items():
        mode = definition.on_error(step)
        if isinstance(mode, Fallback) and mode.fallback in definition.steps.keys() - {sid}:
            edges.append(Edge(sid, mode.fallback, fallback=True))
    return Graph(
        nodes=tuple(nodes),
        edges=tuple(edges),
        title=definition.name if title is None else title,
        coloured=progress is not None,
    )


# --- sizes -------------------------------------------------------------------------------------

FONT = (
    "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', 'Liberation Mono', "
    "monospace"
)
"""Monospace, so that a label's width is known from its length without measuring it."""
ID_SIZE, TEXT_SIZE = 13.0, 11.0
ID_LINE, TEXT_LINE = 17.0, 15.0
CHAR = 0.62
"""Advance of one monospace character, in ems (DejaVu Sans Mono and Menlo: 0.602)."""
PAD_X, PAD_Y = 12.0, 8.0
MIN_WIDTH = 72.0
H_GAP = 28.0
"""Least gap between two boxes of a layer."""
V_GAP = 44.0
"""Least gap between layers: room for the curves and the arrowheads."""
V_GAP_MAX = 160.0
STEEPNESS = 0.12
"""Layers move apart to a tenth or so of the widest jump of an edge between them (at most
``V_GAP_MAX``), so that the edges of wide fan-outs do not run flat."""
VIRTUAL_WIDTH = 6.0
VIRTUAL_GAP = 10.0
MARGIN = 20.0
PORT_GAP = 12.0
"""Spacing of the ends of several edges along one side of a box."""
ARROW_ROOM = 9.0
"""Least spacing of arrowheads side by side; closer ones are drawn as one."""
SWEEPS = 8
"""Barycenter iterations (each one sweep down and one up) at most."""
TRANSPOSE_PASSES = 4
TRANSPOSE_WORK = 200_000
"""Edge pairs that the swaps of neighbours (after the sweeps) may look at."""
PLACEMENT_ROUNDS = 6
SETTLED = 0.5
"""Placement stops early once no node moves this far (pixels) in a round."""
VIRTUAL_BUDGET = 20_000
"""At most this many virtual nodes (and at least four per real node and edge); the longest
edges beyond it are drawn straight from box to box."""


def text_width(text: str, size: float) -> float:
    """The drawn width of ``text`` in the monospace font (wide characters count two)."""
    cells = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        cells += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return cells * CHAR * size


def box_size(node: Node) -> tuple[float, float]:
    """The (width, height) of a node's box, which fits its label."""
    lines = node.lines()
    width = max(
        [text_width(lines[0], ID_SIZE)] + [text_width(line, TEXT_SIZE) for line in lines[1:]]
    )
    height = ID_LINE + TEXT_LINE * (len(lines) - 1)
    return max(MIN_WIDTH, round(width + 2 * PAD_X)), height + 2 * PAD_Y


# --- layout ------------------------------------------------------------------------------------

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """Where a node is drawn: its top-left corner, size and layer."""

    node: Node
    x: float
    y: float
    width: float
    height: float
    layer: int

    @property
    def cx(self) -> float:
        """The x of its centre."""
        return self.x + self.width / 2


@dataclass(frozen=True)
class Path:
    """An edge's route: from a box's bottom, through its virtual nodes, to a box's top."""

    edge: Edge
    points: tuple[Point, ...]
    """The ends and, for a long edge, where it enters and leaves each layer it crosses."""


@dataclass(frozen=True)
class Layout:
    """Boxes and edge routes of a graph, in pixels, from (0, 0)."""

    boxes: dict[str, Box]
    paths: list[Path]
    width: float
    height: float
    layers: int
    crossings: int


@dataclass
class _Virtual:
    """A node of the layered graph: a real node, or a point of a long edge in a layer."""

    layer: int
    width: float
    real: bool
    up: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)


def layers_of(graph: Graph) -> dict[str, int]:
    """Each node's layer: the longest path to it from the roots over its edges.

    Fallback edges count, so that a fallback is drawn below the step it stands in for, unless
    they would close a cycle; then only needs count. Nodes on a cycle (an invalid definition)
    are put below what they need that has a layer, so every node gets one.
    """
    ids = [node.id for node in graph.nodes]
    needs_only = [e for e in graph.edges if not e.fallback]
    layers = _longest_paths(ids, list(graph.edges))
    if len(layers) < len(ids):
        layers = _longest_paths(ids, needs_only)
    if len(layers) < len(ids):
        preds: dict[str, list[str]] = {i: [] for i in ids}
        for edge in needs_only:
            if edge.source in preds and edge.target in preds:
                preds[edge.target].append(edge.source)
        for sid in ids:
            if sid not in layers:
                known = [layers[p] for p in preds[sid] if p in layers]
                layers[sid] = max(known, default=-1) + 1
    return {sid: layers[sid] for sid in ids}


def _longest_paths(ids: list[str], edges: list[Edge]) -> dict[str, int]:
    """Kahn's algorithm; the nodes of cycles (and below them) are left out."""
    below: dict[str, list[str]] = {i: [] for i in ids}
    waiting = dict.fromkeys(ids, 0)
    for edge in edges:
        if edge.source in below and edge.target in below:
            below[edge.source].append(edge.target)
            waiting[edge.target] += 1
    layer = dict.fromkeys(ids, 0)
    ready = [i for i in ids if waiting[i] == 0]
    done: dict[str, int] = {}
    while ready:
        sid = ready.pop()
        done[sid] = layer[sid]
        for target in below[sid]:
            layer[target] = max(layer[target], layer[sid] + 1)
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    return done


def layout(graph: Graph) -> Layout:
    """Place every box and route every edge (see the module's docstring).

    Returns:
        A layout whose boxes do not overlap and whose edges go down at least one layer
        (edges of a cycle, which only invalid definitions have, may go up).
    """
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    sizes = [box_size(node) for node in graph.nodes]
    layer_of = layers_of(graph)
    virtual = [_Virtual(layer_of[node.id], sizes[i][0], True) for i, node in enumerate(graph.nodes)]
    edges = [e for e in graph.edges if e.source in index and e.target in index]
    chains = _chains(edges, index, virtual)
    layers: list[list[int]] = [[] for _ in range(max((v.layer for v in virtual), default=0) + 1)]
    for i, v in enumerate(virtual):
        layers[v.layer].append(i)
    layers, crossings = _order(layers, virtual)
    x = _place(layers, virtual)

    heights = [0.0] * len(layers)
    for i in range(len(graph.nodes)):
        heights[virtual[i].layer] = max(heights[virtual[i].layer], sizes[i][1])
    gaps = [V_GAP] * len(layers)
    for i, v in enumerate(virtual):
        for lower in v.down:
            wide = abs(x[lower] - x[i]) * STEEPNESS
            gaps[v.layer] = max(gaps[v.layer], min(wide, V_GAP_MAX))
    tops = []
    y = 0.0
    for height, gap in zip(heights, gaps, strict=True):
        tops.append(y)
        y += height + gap
    total_height = y - gaps[-1] if layers else 0.0

    left = min((x[i] - v.width / 2 for i, v in enumerate(virtual)), default=0.0)
    right = max((x[i] + v.width / 2 for i, v in enumerate(virtual)), default=0.0)
    boxes = {}
    for i, node in enumerate(graph.nodes):
        width, height = sizes[i]
        layer = virtual[i].layer
        boxes[node.id] = Box(
            node=node,
            x=x[i] - width / 2 - left,
            y=tops[layer] + (heights[layer] - height) / 2,
            width=width,
            height=height,
            layer=layer,
        )

    paths = _routes(edges, chains, virtual, boxes, x, left, tops, heights)
    return Layout(
        boxes=boxes,
        paths=paths,
        width=right - left,
        height=total_height,
        layers=len(layers),
        crossings=crossings,
    )


def _chains(edges: list[Edge], index: dict[str, int], virtual: list[_Virtual]) -> list[list[int]]:
    """Each edge's chain of nodes in the layered graph: its source, a virtual node in each
    layer it crosses, its target. Links neighbours (``up``/``down``) along the chains."""
    spans = [virtual[index[e.target]].layer - virtual[index[e.source]].layer for e in edges]
    budget = max(VIRTUAL_BUDGET, 4 * (len(virtual) + len(edges)))
    split: set[int] = set()
    for k in sorted(range(len(edges)), key=lambda k: (spans[k], k)):
        if spans[k] > 1 and spans[k] - 1 <= budget:
            budget -= spans[k] - 1
            split.add(k)
    chains = []
    for k, edge in enumerate(edges):
        source, target = index[edge.source], index[edge.target]
        chain = [source]
        if k in split:
            for layer in range(virtual[source].layer + 1, virtual[target].layer):
                virtual.append(_Virtual(layer, VIRTUAL_WIDTH, False))
                chain.append(len(virtual) - 1)
        chain.append(target)
        if spans[k] >= 1 and (spans[k] == 1 or k in split):
            for upper, lower in pairwise(chain):
                virtual[upper].down.append(lower)
                virtual[lower].up.append(upper)
        chains.append(chain)
    return chains


def _order(layers: list[list[int]], virtual: list[_Virtual]) -> tuple[list[list[int]], int]:
    """Barycenter sweeps; the order with the fewest crossings, and that count."""
    position = [0] * len(virtual)

    def number(layer: list[int]) -> None:
        for p, v in enumerate(layer):
            position[v] = p

    for layer in layers:
        number(layer)
    best = [list(layer) for layer in layers]
    fewest = _crossings(layers, virtual, position)
    for sweep in range(SWEEPS):
        if fewest == 0:
            break
        for rank in range(1, len(layers)):
            layers[rank] = _by_barycenter(layers[rank], virtual, position, up=True)
            number(layers[rank])
        for rank in range(len(layers) - 2, -1, -1):
            layers[rank] = _by_barycenter(layers[rank], virtual, position, up=False)
            number(layers[rank])
        count = _crossings(layers, virtual, position)
        if count < fewest:
            fewest, best = count, [list(layer) for layer in layers]
        elif sweep >= 2:
            break
    if fewest:
        for layer in best:
            number(layer)
        _transpose(best, virtual, position)
        fewest = _crossings(best, virtual, position)
    return best, fewest


def _by_barycenter(
    layer: list[int], virtual: list[_Virtual], position: list[int], *, up: bool
) -> list[int]:
    """The layer ordered by the mean position of each node's neighbours above (``up``) or
    below; nodes without such neighbours keep their places."""
    keys: dict[int, float] = {}
    for v in layer:
        neighbours = virtual[v].up if up else virtual[v].down
        if neighbours:
            keys[v] = sum(position[n] for n in neighbours) / len(neighbours)
    moving = iter(sorted(keys, key=lambda v: (keys[v], position[v])))
    return [next(moving) if v in keys else v for v in layer]


def _transpose(layers: list[list[int]], virtual: list[_Virtual], position: list[int]) -> None:
    """Swap neighbours in a layer while that removes crossings (a bounded amount of work)."""
    work = 0
    for _ in range(TRANSPOSE_PASSES):
        improved = False
        for layer in layers:
            for k in range(len(layer) - 1):
                u, v = layer[k], layer[k + 1]
                a, b = virtual[u], virtual[v]
                work += len(a.up) * len(b.up) + len(a.down) * len(b.down) + 1
                if work > TRANSPOSE_WORK:
                    return
                if _pair_crossings(a, b, position) > _pair_crossings(b, a, position):
                    layer[k], layer[k + 1] = v, u
                    position[u], position[v] = k + 1, k
                    improved = True
        if not improved:
            return


def _pair_crossings(left: _Virtual, right: _Virtual, position: list[int]) -> int:
    """Crossings among the edges of two neighbours of a layer, ``left`` left of ``right``."""
    count = 0
    for mine, theirs in ((left.up, right.up), (left.down, right.down)):
        for a in mine:
            for b in theirs:
                if position[a] > position[b]:
                    count += 1
    return count


def _crossings(layers: list[list[int]], virtual: list[_Virtual], position: list[int]) -> int:
    """Edge crossings between every pair of adjacent layers (inversions, Fenwick tree)."""
    total = 0
    for rank in range(len(layers) - 1):
        ends = sorted((position[u], position[v]) for u in layers[rank] for v in virtual[u].down)
        size = len(layers[rank + 1])
        tree = [0] * (size + 1)
        for seen, (_, lower) in enumerate(ends):
            # edges seen so far whose lower end is right of this one cross it
            i, not_right = lower + 1, 0
            while i > 0:
                not_right += tree[i]
                i -= i & -i
            total += seen - not_right
            i = lower + 1
            while i <= size:
                tree[i] += 1
                i += i & -i
    return total


def _place(layers: list[list[int]], virtual: list[_Virtual]) -> list[float]:
    """x of every node's centre: packed, then pulled towards its neighbours, round by round."""
    x = [0.0] * len(virtual)
    offsets: list[list[float]] = []
    for layer in layers:
        at, packed = 0.0, []
        for k, v in enumerate(layer):
            if k:
                at += _gap(virtual, layer[k - 1], v)
            packed.append(at)
        offsets.append(packed)
        for v, offset in zip(layer, packed, strict=True):
            x[v] = offset - at / 2
    if len(layers) < 2:
        return x
    up = [v.up for v in virtual]
    down = [v.down for v in virtual]
    both = [v.up + v.down for v in virtual]
    weight = [1.0 if v.real else 2.0 for v in virtual]
    """Virtual nodes weigh more, so long edges stay straight and boxes move aside."""
    for _ in range(PLACEMENT_ROUNDS):
        before = list(x)
        for rank in range(1, len(layers)):
            _pull(layers[rank], offsets[rank], up, weight, x)
        for rank in range(len(layers) - 2, -1, -1):
            _pull(layers[rank], offsets[rank], down, weight, x)
        if max(abs(a - b) for a, b in zip(x, before, strict=True)) < SETTLED:
            break
    for rank in range(len(layers)):
        _pull(layers[rank], offsets[rank], both, weight, x)
    return x


def _gap(virtual: list[_Virtual], left: int, right: int) -> float:
    """Least distance between the centres of two neighbours in a layer."""
    a, b = virtual[left], virtual[right]
    gap = H_GAP if a.real and b.real else VIRTUAL_GAP
    return (a.width + b.width) / 2 + gap


def _pull(
    layer: list[int],
    offsets: list[float],
    neighbours: list[list[int]],
    weight: list[float],
    x: list[float],
) -> None:
    """Move a layer's nodes as near as the gaps allow to the mean x of their neighbours.

    Minimises the weighted squared distance to the wanted places subject to the order and the
    least gaps: with ``offsets`` (the packed positions), ``y = x - offset`` must not
    decrease, which is isotonic regression, solved by pooling adjacent violators in linear
    time. Nodes without neighbours want to stay where they are, and weigh little.
    """
    at = x.__getitem__
    weights: list[float] = []  # one entry per pooled block
    sums: list[float] = []
    counts: list[int] = []
    for v, offset in zip(layer, offsets, strict=True):
        around = neighbours[v]
        if around:
            w = weight[v]
            total = w * (sum(map(at, around)) / len(around) - offset)
        else:
            w = 0.25
            total = w * (x[v] - offset)
        count = 1
        while weights and sums[-1] * w > total * weights[-1]:  # the block before is right of it
            w += weights.pop()
            total += sums.pop()
            count += counts.pop()
        weights.append(w)
        sums.append(total)
        counts.append(count)
    k = 0
    for w, total, count in zip(weights, sums, counts, strict=True):
        value = total / w
        for _ in range(count):
            x[layer[k]] = value + offsets[k]
            k += 1


def _routes(
    edges: list[Edge],
    chains: list[list[int]],
    virtual: list[_Virtual],
    boxes: Mapping[str, Box],
    x: list[float],
    left: float,
    tops: list[float],
    heights: list[float],
) -> list[Path]:
    """Every edge's points, its ends spread along the sides of its boxes."""
    ids = list(boxes)
    outgoing: dict[int, list[tuple[float, int]]] = {}
    incoming: dict[int, list[tuple[float, int]]] = {}
    for k, chain in enumerate(chains):
        after, before = chain[1], chain[-2]
        outgoing.setdefault(chain[0], []).append((x[after] - left, k))
        incoming.setdefault(chain[-1], []).append((x[before] - left, k))
    start: dict[int, float] = {}
    end: dict[int, float] = {}
    for ends, side in ((outgoing, start), (incoming, end)):
        for v, found in ends.items():
            box = boxes[ids[v]]
            found.sort()
            room = box.width - 2 * PAD_X
            spread = min(room, PORT_GAP * (len(found) - 1))
            if side is end and spread < ARROW_ROOM * (len(found) - 1):
                spread = 0.0  # too many arrowheads to tell apart: they meet in one
            step = spread / (len(found) - 1) if len(found) > 1 else 0.0
            for n, (_, k) in enumerate(found):
                side[k] = box.cx - spread / 2 + n * step
    paths = []
    for k, (edge, chain) in enumerate(zip(edges, chains, strict=True)):
        source, target = boxes[edge.source], boxes[edge.target]
        points: list[Point] = [(start[k], source.y + source.height)]
        for v in chain[1:-1]:
            layer = virtual[v].layer
            points.append((x[v] - left, tops[layer]))
            points.append((x[v] - left, tops[layer] + heights[layer]))
        points.append((end[k], target.y))
        paths.append(Path(edge, tuple(points)))
    return paths


# --- SVG ---------------------------------------------------------------------------------------

TITLE_SIZE = 15.0
LEGEND_SIZE = 11.0
SWATCH = 12.0
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Text made safe for XML content: ``&<>`` escaped, characters XML forbids replaced."""
    return escape(_NOT_XML.sub("\ufffd", text))


def xml_attr(text: str) -> str:
    """A quoted XML attribute value (quotes, ``&<>`` and line breaks escaped)."""
    return quoteattr(_NOT_XML.sub("\ufffd", text), {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _n(value: float) -> str:
    """A coordinate with one decimal at most (``12``, ``12.5``)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def render_svg(graph: Graph, drawn: Layout | None = None) -> str:
    """The graph as a standalone SVG document.

    Every box is a ``<g class="node">`` with ``data-step`` and (for a run) ``data-status``,
    and a ``<title>`` tooltip with its lines and last error; every edge is a ``<path
    class="edge">`` (``edge fallback`` for dashed fallback edges) with ``data-from`` and
    ``data-to``.

    Args:
        graph: What to draw.
        drawn: Its layout, if already computed.
    """
    drawn = drawn or layout(graph)
    legend = _legend(graph)
    header = TITLE_SIZE + 12 if graph.title else 0.0
    legend_width = 0.0
    if legend:
        header += SWATCH + 14
        legend_width = sum(width for _, _, width in legend) - 14
    inner = max(drawn.width, legend_width, text_width(graph.title, TITLE_SIZE))
    width = inner + 2 * MARGIN
    height = drawn.height + header + 2 * MARGIN
    dx = MARGIN + (inner - drawn.width) / 2
    dy = MARGIN + header

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" font-family={xml_attr(FONT)}>',
    ]
    if graph.title:
        out.append(f"<title>{xml_text(graph.title)}</title>")
    out += [
        "<defs>",
        _marker("arrow", EDGE),
        _marker("arrow-fallback", FALLBACK_EDGE),
        "</defs>",
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
    ]
    if graph.title:
        out.append(
            f'<text x="{_n(MARGIN)}" y="{_n(MARGIN + TITLE_SIZE)}" font-size="{_n(TITLE_SIZE)}" '
            f'font-weight="bold" fill="#0f172a">{xml_text(graph.title)}</text>'
        )
    if legend:
        top = MARGIN + (TITLE_SIZE + 12 if graph.title else 0.0)
        out.append(f'<g class="legend" transform="translate({_n(MARGIN)},{_n(top)})">')
        at = 0.0
        for kind, label, item_width in legend:
            out.append(_legend_item(kind, label, at))
            at += item_width
        out.append("</g>")

    out.append(f'<g class="graph" transform="translate({_n(dx)},{_n(dy)})">')
    for path in drawn.paths:
        out.append(_edge(path))
    for box in drawn.boxes.values():
        out.append(_box(box))
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg(
    definition: Definition,
    steps: Iterable[StepProgress] | None = None,
    *,
    title: str | None = None,
) -> str:
    """A definition's DAG as SVG, coloured by status when a run's ``steps`` are given."""
    return render_svg(graph_of(definition, steps, title=title))


def _marker(name: str, colour: str) -> str:
    return (
        f'<marker id="{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        f'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
    )


def _legend(graph: Graph) -> list[tuple[str, str, float]]:
    """(kind, label, width) of each legend item: statuses when coloured, fallback edges."""
    items = []
    if graph.coloured:
        items += [(str(status), str(status), 0.0) for status in STATUS_COLOURS]
    if any(edge.fallback for edge in graph.edges):
        items.append(("fallback", "fallback (runs instead)", 0.0))
    return [
        (kind, label, SWATCH + 6 + text_width(label, LEGEND_SIZE) + 14) for kind, label, _ in items
    ]


def _legend_item(kind: str, label: str, at: float) -> str:
    middle = SWATCH / 2
    if kind == "fallback":
        mark = (
            f'<path d="M{_n(at)},{_n(middle)} h{_n(SWATCH)}" stroke="{FALLBACK_EDGE}" '
            f'stroke-width="1.5" stroke-dasharray="4 3" fill="none"/>'
        )
    else:
        colours = STATUS_COLOURS[kind]
        mark = (
            f'<rect x="{_n(at)}" y="0" width="{_n(SWATCH)}" height="{_n(SWATCH)}" rx="3" '
            f'fill="{colours.fill}" stroke="{colours.stroke}" stroke-width="1.5"/>'
        )
    text = (
        f'<text x="{_n(at + SWATCH + 6)}" y="{_n(middle + LEGEND_SIZE * 0.35)}" '
        f'font-size="{_n(LEGEND_SIZE)}" fill="#334155">{xml_text(label)}</text>'
    )
    return f'<g class="legend-item" data-kind={xml_attr(kind)}>{mark}{text}</g>'


def _edge(path: Path) -> str:
    points = path.points
    d = [f"M{_n(points[0][0])},{_n(points[0][1])}"]
    for k, ((x0, y0), (x1, y1)) in enumerate(pairwise(points)):
        if k % 2:  # through a layer, between its boxes
            d.append(f"L{_n(x1)},{_n(y1)}")
            continue
        bend = max(abs(y1 - y0) / 2, 16.0)
        d.append(f"C{_n(x0)},{_n(y0 + bend)} {_n(x1)},{_n(y1 - bend)} {_n(x1)},{_n(y1)}")
    edge = path.edge
    if edge.fallback:
        style = f'stroke="{FALLBACK_EDGE}" stroke-dasharray="6 4" marker-end="url(#arrow-fallback)"'
    else:
        style = f'stroke="{EDGE}" marker-end="url(#arrow)"'
    kind = "edge fallback" if edge.fallback else "edge"
    return (
        f'<path class="{kind}" data-from={xml_attr(edge.source)} data-to={xml_attr(edge.target)} '
        f'd="{" ".join(d)}" fill="none" stroke-width="1.5" {style}/>'
    )


def _box(box: Box) -> str:
    node = box.node
    colours = STATUS_COLOURS.get(node.status, PLAIN) if node.status else PLAIN
    status = f" data-status={xml_attr(node.status)}" if node.status else ""
    thick = "2.5" if node.status in (StepStatus.RUNNING, StepStatus.NEEDS_ATTENTION) else "1.5"
    dash = ' stroke-dasharray="5 3"' if node.status == StepStatus.SKIPPED else ""
    parts = [
        f'<g class="node" data-step={xml_attr(node.id)}{status}>',
        f"<title>{xml_text(node.tooltip())}</title>",
        f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.width)}" '
        f'height="{_n(box.height)}" rx="6" fill="{colours.fill}" stroke="{colours.stroke}" '
        f'stroke-width="{thick}"{dash}/>',
    ]
    lines = node.lines()
    top = box.y + PAD_Y
    for k, line in enumerate(lines):
        size, height = (ID_SIZE, ID_LINE) if k == 0 else (TEXT_SIZE, TEXT_LINE)
        weight = ' font-weight="bold"' if k == 0 else ""
        fill = colours.text if k == 0 else _muted(colours)
        parts.append(
            f'<text x="{_n(box.cx)}" y="{_n(top + height / 2 + size * 0.35)}" '
            f'font-size="{_n(size)}" text-anchor="middle" fill="{fill}"{weight}>'
            f"{xml_text(line)}</text>"
        )
        top += height
    parts.append("</g>")
    return "".join(parts)


def _muted(colours: Palette) -> str:
    return "#71717a" if colours.text == "#71717a" else "#475569"


# --- Mermaid -----------------------------------------------------------------------------------

_MERMAID_ENTITIES = {'"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def mermaid_id(step: str) -> str:
    """A Mermaid node id for a step: ``s_`` and the id, other characters as ``_``
    (the prefix keeps words Mermaid reserves, like ``end``, from being ids)."""
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", step)


def mermaid_label(text: str) -> str:
    """Text for a quoted Mermaid label (quotes, ``#``, ``<>&`` as entity codes)."""
    text = _NOT_XML.sub("\ufffd", text).replace("\n", " ")
    return "".join(_MERMAID_ENTITIES.get(char, char) for char in text)


def render_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid ``flowchart TD``, with a ``classDef`` per status for a run."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for node in graph.nodes:
        base = candidate = mermaid_id(node.id)
        n = 2
        while candidate in used:
            candidate, n = f"{base}_{n}", n + 1
        ids[node.id] = candidate
        used.add(candidate)
    out = []
    if graph.title:
        out += ["---", f"title: {mermaid_label(graph.title)}", "---"]
    out.append("flowchart TD")
    for node in graph.nodes:
        label = "<br/>".join(mermaid_label(line) for line in node.lines())
        out.append(f'    {ids[node.id]}["{label}"]')
    for edge in graph.edges:
        if edge.source not in ids or edge.target not in ids:
            continue
        arrow = "-.->|fallback|" if edge.fallback else "-->"
        out.append(f"    {ids[edge.source]} {arrow} {ids[edge.target]}")
    if graph.coloured:
        for status, colours in STATUS_COLOURS.items():
            out.append(
                f"    classDef {status} fill:{colours.fill},stroke:{colours.stroke},"
                f"color:{colours.text}"
            )
        by_status: dict[str, list[str]] = {}
        for node in graph.nodes:
            if node.status in STATUS_COLOURS:
                by_status.setdefault(node.status, []).append(ids[node.id])
        for status in STATUS_COLOURS:
            if status in by_status:
                out.append(f"    class {','.join(by_status[status])} {status}")
    return "\n".join(out) + "\n"


def mermaid(
    definition: Definition,
    steps: Iterable[StepProgress] | None = None,
    *,
    title: str | None = None,
) -> str:
    """A definition's DAG as Mermaid text, with status classes when ``steps`` are given."""
    return render_mermaid(graph_of(definition, steps, title=title))


__all__ = [
    "STATUS_COLOURS",
    "Box",
    "Edge",
    "Graph",
    "Layout",
    "Node",
    "Path",
    "graph_of",
    "layers_of",
    "layout",
    "mermaid",
    "render_mermaid",
    "render_svg",
    "svg",
]
