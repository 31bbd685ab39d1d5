"""Pictures of DAGs: the layout's properties, the SVG and Mermaid text, the service's graph
routes (with a real parked run), and ``dagflow definitions graph``."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from click.testing import CliRunner
from temporalio.client import Client

from starter.client import DagflowClient
from starter.commands.graph import graph_cmd
from starter.errors import BadRequest, NotFound
from starter.graph import (
    ID_SIZE,
    PAD_X,
    STATUS_COLOURS,
    TEXT_SIZE,
    Edge,
    Graph,
    Layout,
    Node,
    graph_of,
    layers_of,
    layout,
    render_mermaid,
    render_svg,
    text_width,
)
from tests.engine import dag_worker
from tests.starter import Starter
from tests.steps import Probe
from workflows.definition import Definition
from workflows.types import StepProgress

SVG_NS = "{http://www.w3.org/2000/svg}"

# --- graphs ------------------------------------------------------------------------------------


def definition(name: str, steps: dict[str, Any], **extra: Any) -> Definition:
    return Definition.model_validate({"name": name, "steps": steps, **extra})


def fan_out(width: int) -> Definition:
    leaves = [f"leaf_{i}" for i in range(width)]
    return definition(
        "fan-out",
        {
            "root": {"uses": "http", "with": {"url": "https://example.com"}},
            **{leaf: {"uses": "transform", "needs": ["root"]} for leaf in leaves},
            "join": {"uses": "transform", "needs": leaves},
        },
    )


def chain(length: int) -> Definition:
    return definition(
        "chain",
        {
            f"c{i}": {"uses": "transform", **({"needs": [f"c{i - 1}"]} if i else {})}
            for i in range(length)
        },
    )


def grid() -> Definition:
    """Four layers of four, crossing needs, a long need, a fallback and a for_each."""
    kinds = [
        {"uses": "http", "with": {"url": "https://example.com"}},
        {"uses": "transform", "with": {"value": 1}},
        {"uses": "webhook", "with": {"url": "https://example.com/hook"}},
        {"uses": "validate", "with": {"value": 1, "schema": {"type": "integer"}}},
    ]
    steps: dict[str, Any] = {}
    for row in range(4):
        for col in range(4):
            above = {f"s{row - 1}_{(col + 1) % 4}", f"s{row - 1}_{col * 3 % 4}"}
            steps[f"s{row}_{col}"] = {**kinds[col], "needs": sorted(above) if row else []}
    steps["s1_2"]["on_error"] = {"fallback": "rescue"}
    steps["rescue"] = {"uses": "transform", "needs": ["s0_1"], "with": {"value": 0}}
    steps["s3_0"]["needs"].append("s0_3")
    steps["s2_1"]["for_each"] = "${{ [1, 2, 3] }}"
    return definition("grid", steps)


def random_dag(size: int, seed: int) -> Definition:
    rnd = random.Random(seed)
    steps: dict[str, Any] = {}
    for i in range(size):
        count = rnd.randint(0, min(3, i))
        needs = sorted({f"s{rnd.randint(max(0, i - 8), i - 1)}" for _ in range(count)})
        steps[f"s{i}"] = {"uses": "transform", "needs": needs}
    return definition(f"random-{seed}", steps)


def check_layout(graph: Graph) -> Layout:
    """The layout's promises: every step drawn once, inside the picture, its label inside its
    box; no two boxes overlap; every edge goes down at least one layer, from its source's
    bottom to its target's top, and long edges pass between the boxes of the layers they
    cross; a step's layer is one below its lowest need (longest path)."""
    drawn = layout(graph)
    assert list(drawn.boxes) == [node.id for node in graph.nodes]
    layers: dict[int, list[Any]] = {}
    for box in drawn.boxes.values():
        assert box.x >= -0.01 and box.y >= -0.01
        assert box.x + box.width <= drawn.width + 0.01
        assert box.y + box.height <= drawn.height + 0.01
        lines = box.node.lines()
        widest = max(
            [text_width(lines[0], ID_SIZE)] + [text_width(line, TEXT_SIZE) for line in lines[1:]]
        )
        assert widest + 2 * PAD_X <= box.width + 0.5, box.node.id
        layers.setdefault(box.layer, []).append(box)
    assert sorted(layers) == list(range(drawn.layers))
    bottom = -1.0
    for rank in range(drawn.layers):
        row = sorted(layers[rank], key=lambda b: b.x)
        for left, right in pairwise(row):
            assert left.x + left.width < right.x, (left.node.id, right.node.id)
        assert min(b.y for b in row) > bottom
        bottom = max(b.y + b.height for b in row)

    below: dict[str, list[int]] = {node.id: [] for node in graph.nodes}
    for path in drawn.paths:
        source = drawn.boxes[path.edge.source]
        target = drawn.boxes[path.edge.target]
        assert target.layer > source.layer, path.edge
        below[target.node.id].append(source.layer)
        ys = [y for _, y in path.points]
        assert ys == sorted(ys)
        assert ys[0] == pytest.approx(source.y + source.height)
        assert ys[-1] == pytest.approx(target.y)
        assert source.x <= path.points[0][0] <= source.x + source.width
        assert target.x <= path.points[-1][0] <= target.x + target.width
        inner = path.points[1:-1]  # where the edge enters and leaves each layer it crosses
        for (x, top), (_, end) in zip(inner[::2], inner[1::2], strict=True):
            for box in drawn.boxes.values():
                level = box.y < end and top < box.y + box.height
                assert not (level and box.x < x < box.x + box.width), (path.edge, box.node.id)
    for sid, uppers in below.items():
        assert drawn.boxes[sid].layer == (max(uppers) + 1 if uppers else 0)
    return drawn


def nodes_of(svg: str) -> dict[str, ET.Element]:
    """Each ``<g class="node">`` of an SVG by its ``data-step``."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    return {
        g.attrib["data-step"]: g for g in root.iter(f"{SVG_NS}g") if g.attrib.get("class") == "node"
    }


def fill_of(node: ET.Element) -> tuple[str, str]:
    rect = node.find(f"{SVG_NS}rect")
    assert rect is not None
    return rect.attrib["fill"], rect.attrib["stroke"]


def texts_of(node: ET.Element) -> list[str]:
    return [t.text or "" for t in node.iter(f"{SVG_NS}text")]


# --- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "made",
    [
        definition("one", {"only": {"uses": "transform"}}),
        fan_out(200),
        grid(),
        random_dag(120, 1),
        random_dag(60, 2),
    ],
    ids=["one-step", "fan-out-200", "grid-4x4-fallback", "random-120", "random-60"],
)
def test_the_layout_keeps_its_promises(made: Definition) -> None:
    drawn = check_layout(graph_of(made))
    assert drawn.width > 0 and drawn.height > 0


def test_a_wide_fan_out_is_one_wide_layer_without_crossings() -> None:
    drawn = check_layout(graph_of(fan_out(200)))
    assert drawn.layers == 3 and drawn.crossings == 0
    assert {drawn.boxes[f"leaf_{i}"].layer for i in range(200)} == {1}
    root, join = drawn.boxes["root"], drawn.boxes["join"]
    assert abs(root.cx - join.cx) < 1.0  # both centred over the leaves


def test_a_fallback_is_drawn_below_its_step_with_a_dashed_edge() -> None:
    graph = graph_of(grid())
    assert Edge("s1_2", "rescue", fallback=True) in graph.edges
    drawn = check_layout(graph)
    assert drawn.boxes["rescue"].layer > drawn.boxes["s1_2"].layer
    root = ET.fromstring(render_svg(graph, drawn))
    dashed = [p for p in root.iter(f"{SVG_NS}path") if p.attrib.get("class") == "edge fallback"]
    assert [(p.attrib["data-from"], p.attrib["data-to"]) for p in dashed] == [("s1_2", "rescue")]
    assert "stroke-dasharray" in dashed[0].attrib
    found = nodes_of(render_svg(graph, drawn))
    assert texts_of(found["rescue"]) == ["rescue", "transform · fallback"]
    assert texts_of(found["s2_1"]) == ["s2_1", "transform · for_each"]


def test_barycenter_sweeps_remove_avoidable_crossings() -> None:
    # Two chains whose second layer is given crossed: a, b over y (needs b), x (needs a).
    made = definition(
        "crossed",
        {
            "a": {"uses": "transform"},
            "b": {"uses": "transform"},
            "y": {"uses": "transform", "needs": ["b"]},
            "x": {"uses": "transform", "needs": ["a"]},
            "z": {"uses": "transform", "needs": ["x", "y"]},
        },
    )
    drawn = check_layout(graph_of(made))
    assert drawn.crossings == 0
    assert drawn.boxes["x"].x < drawn.boxes["y"].x


def test_a_1000_step_chain_lays_out_fast() -> None:
    graph = graph_of(chain(1000))
    started = time.perf_counter()
    svg = render_svg(graph)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"{elapsed:.2f}s"  # about 0.1 s on a laptop
    drawn = check_layout(graph)
    assert drawn.layers == 1000 and drawn.crossings == 0
    assert len(nodes_of(svg)) == 1000


def test_the_same_input_gives_the_same_bytes() -> None:
    for made in (grid(), random_dag(80, 3), fan_out(30)):
        first = render_svg(graph_of(made))
        again = render_svg(graph_of(Definition.model_validate(made.model_dump(by_alias=True))))
        assert first == again
        assert render_mermaid(graph_of(made)) == render_mermaid(graph_of(made))


# --- SVG ---------------------------------------------------------------------------------------


def test_the_svg_is_xml_with_a_node_per_step_and_a_path_per_edge() -> None:
    graph = graph_of(grid())
    svg = render_svg(graph)
    root = ET.fromstring(svg)
    assert root.attrib["viewBox"].startswith("0 0 ")
    assert len(nodes_of(svg)) == len(graph.nodes) == 17
    edges = [p for p in root.iter(f"{SVG_NS}path") if "edge" in p.attrib.get("class", "")]
    assert len(edges) == len(graph.edges)
    assert all(p.attrib["marker-end"].startswith("url(#arrow") for p in edges)
    assert all(p.attrib["d"].startswith("M") and " C" in p.attrib["d"] for p in edges)
    title = root.find(f"{SVG_NS}title")
    assert title is not None and title.text == "grid"
    legend = [g for g in root.iter(f"{SVG_NS}g") if g.attrib.get("class") == "legend-item"]
    assert [g.attrib["data-kind"] for g in legend] == ["fallback"]  # no statuses: no run


def test_labels_are_escaped() -> None:
    nasty = "a<b>&\"c'</text><script>alert(1)</script>\x00\x1b"
    graph = Graph(
        nodes=(
            Node(id=nasty, kind="<kind & co>", status="failed", error="boom </title> & <x>"),
            Node(id="plain", kind="k]]>", status="weird<status>"),
        ),
        edges=(Edge(nasty, "plain"), Edge("plain", "missing")),
        title="<title> & co",
        coloured=True,
    )
    svg = render_svg(graph)
    root = ET.fromstring(svg)
    assert not list(root.iter(f"{SVG_NS}script")) and not list(root.iter("script"))
    found = nodes_of(svg)
    cleaned = nasty.replace("\x00", "\ufffd").replace("\x1b", "\ufffd")
    assert set(found) == {cleaned, "plain"}
    assert texts_of(found[cleaned])[:2] == [cleaned, "<kind & co>"]
    tooltip = found[cleaned].find(f"{SVG_NS}title")
    assert tooltip is not None and "boom </title> & <x>" in (tooltip.text or "")
    assert found["plain"].attrib["data-status"] == "weird<status>"
    assert texts_of(found["plain"])[1] == "k]]>"
    text = render_mermaid(graph)
    for line in text.splitlines()[3:]:
        label = line.split('["', 1)[1][:-2].replace("<br/>", "") if '["' in line else ""
        assert not any(char in label for char in '"<>'), line
    assert "#lt;kind #amp; co#gt;" in text


def test_boxes_are_coloured_by_status_with_a_legend() -> None:
    made = definition(
        "mixed",
        {
            "a": {"uses": "http", "with": {"url": "https://example.com"}},
            "b": {"uses": "transform", "needs": ["a"], "for_each": "${{ [1, 2] }}"},
            "c": {"uses": "transform", "needs": ["a"]},
            "d": {"uses": "transform", "needs": ["b", "c"]},
        },
    )
    steps = [
        StepProgress(step="a", kind="http", status="succeeded", attempts=2),
        StepProgress(
            step="b",
            kind="transform",
            status="running",
            attempts=1,
            items_total=40,
            items_done=17,
            items_failed=[3],
        ),
        StepProgress(step="c", kind="transform", status="needs_attention", attempts=3),
    ]  # d: not in the progress, so pending
    svg = render_svg(graph_of(made, steps, title="mixed v1 · run r1"))
    found = nodes_of(svg)
    for step, status in (("a", "succeeded"), ("b", "running"), ("c", "needs_attention")):
        colours = STATUS_COLOURS[status]
        assert fill_of(found[step]) == (colours.fill, colours.stroke)
        assert found[step].attrib["data-status"] == status
    assert found["d"].attrib["data-status"] == "pending"
    assert texts_of(found["a"]) == ["a", "http", "succeeded · 2 attempts"]
    assert texts_of(found["b"]) == [
        "b",
        "transform · for_each",
        "running · 1 attempt",
        "items 17/40, 1 failed",
    ]
    root = ET.fromstring(svg)
    legend = [
        g.attrib["data-kind"]
        for g in root.iter(f"{SVG_NS}g")
        if g.attrib.get("class") == "legend-item"
    ]
    assert legend == [
        "pending",
        "running",
        "succeeded",
        "failed",
        "skipped",
        "needs_attention",
        "cancelled",
    ]
    assert STATUS_COLOURS["needs_attention"].fill == "#fef3c7"  # amber


# --- Mermaid -----------------------------------------------------------------------------------


def test_mermaid_text_is_a_flowchart_with_safe_ids_and_status_classes() -> None:
    made = definition(
        "flow",
        {
            "start": {"uses": "transform"},
            "end": {"uses": "transform", "needs": ["start"], "on_error": {"fallback": "o"}},
            "o": {"uses": "transform", "needs": ["start"]},
        },
    )
    plain = render_mermaid(graph_of(made)).splitlines()
    assert plain[:4] == ["---", "title: flow", "---", "flowchart TD"]
    assert plain[4:] == [
        '    s_start["start<br/>transform"]',
        '    s_end["end<br/>transform"]',
        '    s_o["o<br/>transform · fallback"]',
        "    s_start --> s_end",
        "    s_start --> s_o",
        "    s_end -.->|fallback| s_o",
    ]
    steps = [
        StepProgress(step="start", kind="transform", status="succeeded", attempts=1),
        StepProgress(step="end", kind="transform", status="failed", attempts=1),
    ]
    coloured = render_mermaid(graph_of(made, steps))
    assert "    classDef needs_attention fill:#fef3c7,stroke:#d97706,color:#0f172a" in coloured
    assert "    class s_start succeeded" in coloured
    assert "    class s_end failed" in coloured
    assert "    class s_o pending" in coloured


# --- the service -------------------------------------------------------------------------------

sqlite_only = pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
"""The routes read definitions as GET of a definition does (tested on both databases)."""


@pytest.fixture
async def probe(starter: Starter, client: Client) -> AsyncIterator[Probe]:
    probe = Probe()
    async with dag_worker(client, probe.activities(), task_queue=starter.settings.task_queue):
        yield probe


PARKED = {
    "name": "parked",
    "steps": {
        "first": {"uses": "flaky", "with": {"value": "one"}, "retry": {"max_attempts": 1}},
        "items": {"uses": "transform", "needs": ["first"], "for_each": "${{ [1, 2, 3] }}",
                  "with": {"value": "${{ item }}"}},
        "charge": {"uses": "flaky", "needs": ["first"], "on_error": "manual",
                   "with": {"value": "paid", "fail_times": 1}, "retry": {"max_attempts": 1}},
        "ship": {"uses": "transform", "needs": ["charge", "items"], "with": {"value": 1}},
    },
}  # fmt: skip


async def get_raw(tenant: DagflowClient, path: str) -> tuple[int, str, str]:
    """(status, content type, text) of a GET with the client's key."""
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(tenant.base_url + path, headers=headers) as answer,
    ):
        return answer.status, answer.content_type, await answer.text()


async def until_parked(tenant: DagflowClient, run: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while (await tenant.runs.get(run)).status != "needs_attention":
        assert asyncio.get_running_loop().time() < deadline, "the run did not park"
        await asyncio.sleep(0.05)


@sqlite_only
async def test_a_parked_run_is_drawn_in_its_statuses(starter: Starter, probe: Probe) -> None:
    tenant = await starter.tenant()
    other = await starter.tenant()
    await tenant.definitions.create(PARKED)
    ref = await tenant.runs.start("parked", key="graph-1")
    await until_parked(tenant, ref.id)

    status, content_type, svg = await get_raw(tenant, "/v1/runs/parked/graph-1/graph.svg")
    assert (status, content_type) == (200, "image/svg+xml")
    found = nodes_of(svg)
    assert set(found) == {"first", "items", "charge", "ship"}
    amber = STATUS_COLOURS["needs_attention"]
    assert found["charge"].attrib["data-status"] == "needs_attention"
    assert fill_of(found["charge"]) == (amber.fill, amber.stroke)
    assert texts_of(found["charge"]) == ["charge", "flaky", "needs_attention · 1 attempt"]
    green = STATUS_COLOURS["succeeded"]
    assert fill_of(found["first"]) == (green.fill, green.stroke)
    assert texts_of(found["items"])[-1] == "items 3/3"
    assert found["ship"].attrib["data-status"] == "pending"
    title = ET.fromstring(svg).find(f"{SVG_NS}title")
    assert title is not None and title.text == "parked v1 · run graph-1 · needs_attention"
    assert await tenant.runs.graph(ref.id) == svg

    text = await tenant.runs.graph(ref.id, format="mermaid")
    assert "flowchart TD" in text and "    class s_charge needs_attention" in text
    status, content_type, _ = await get_raw(
        tenant, "/v1/runs/parked/graph-1/graph.svg?format=mermaid"
    )
    assert (status, content_type) == (200, "text/plain")

    with pytest.raises(NotFound):
        await other.runs.graph(ref.id)
    with pytest.raises(NotFound):
        await other.definitions.graph("parked")
    with pytest.raises(NotFound):
        await tenant.runs.graph("parked/no-such-run")
    await tenant.runs.fail(ref.id, "done looking")


@sqlite_only
async def test_a_definition_is_drawn_by_version(starter: Starter) -> None:
    tenant = await starter.tenant()
    one = {"name": "drawn", "steps": {"a": {"uses": "transform", "with": {"value": 1}}}}
    two = {
        "name": "drawn",
        "steps": {
            "a": {"uses": "transform", "with": {"value": 1}},
            "b": {"uses": "transform", "needs": ["a"], "with": {"value": 2}},
        },
    }
    await tenant.definitions.create(one)
    await tenant.definitions.update("drawn", two)

    status, content_type, svg = await get_raw(tenant, "/v1/definitions/drawn/graph.svg")
    assert (status, content_type) == (200, "image/svg+xml")
    assert set(nodes_of(svg)) == {"a", "b"}
    assert "data-status" not in svg  # a definition has no statuses
    old = await tenant.definitions.graph("drawn", version=1)
    assert set(nodes_of(old)) == {"a"} and "drawn v1" in old
    text = await tenant.definitions.graph("drawn", format="mermaid")
    assert "    s_a --> s_b" in text and "classDef" not in text

    with pytest.raises(NotFound):
        await tenant.definitions.graph("drawn", version=9)
    with pytest.raises(NotFound):
        await tenant.definitions.graph("missing")
    with pytest.raises(BadRequest):
        await tenant.definitions.graph("drawn", format="png")

    admin = starter.instance()
    await admin.instance.definitions.create({**one, "name": "shared"})
    assert set(nodes_of(await admin.instance.definitions.graph("shared"))) == {"a"}
    assert set(nodes_of(await tenant.definitions.graph("shared"))) == {"a"}  # tenants read it


@sqlite_only
async def test_the_command_draws_through_the_service(starter: Starter, tmp_path: Path) -> None:
    tenant = await starter.tenant()
    await tenant.definitions.create(PARKED)
    flags = ["--api-url", starter.base_url, "--api-key", str(tenant.api_key)]
    out = tmp_path / "parked.svg"
    result = await asyncio.to_thread(
        CliRunner().invoke, graph_cmd, ["parked", "-o", str(out), *flags]
    )
    assert result.exit_code == 0, result.output
    assert set(nodes_of(out.read_text())) == {"first", "items", "charge", "ship"}
    result = await asyncio.to_thread(
        CliRunner().invoke, graph_cmd, ["parked", "--run", "nope", *flags]
    )
    assert result.exit_code == 2 and "no run parked/nope" in result.output


# --- the command with --file -------------------------------------------------------------------


def test_the_command_draws_a_local_file(tmp_path: Path) -> None:
    source = tmp_path / "grid.yaml"
    source.write_text(yaml.safe_dump(grid().model_dump(by_alias=True, exclude_unset=True)))
    runner = CliRunner()

    result = runner.invoke(graph_cmd, ["--file", str(source)])
    assert result.exit_code == 0, result.output
    assert len(nodes_of(result.output)) == 17

    result = runner.invoke(graph_cmd, ["--file", str(source), "--format", "mermaid"])
    assert result.exit_code == 0 and result.output.splitlines()[3] == "flowchart TD"

    out = tmp_path / "grid.mmd"
    result = runner.invoke(graph_cmd, ["--file", str(source), "-o", str(out)])
    assert result.exit_code == 0 and "flowchart TD" in out.read_text()  # .mmd means mermaid

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  a: {uses: transform, needs: [nope]}\n")
    result = runner.invoke(graph_cmd, ["--file", str(bad)])
    assert result.exit_code == 2 and "steps.a.needs[0]" in result.output

    result = runner.invoke(graph_cmd, ["--file", str(source), "--run", "x"])
    assert result.exit_code == 2
    result = runner.invoke(graph_cmd, [])
    assert result.exit_code == 2 and "name a definition" in result.output


def test_the_command_has_examples_in_its_help() -> None:
    result = CliRunner().invoke(graph_cmd, ["--help"])
    assert result.exit_code == 0
    assert "Example:\n    dagflow definitions graph order-fulfilment -o order.svg" in result.output


def test_unique_mermaid_ids_for_ids_that_sanitise_alike() -> None:
    graph = Graph(nodes=(Node("a-b", "k"), Node("a_b", "k")), edges=(Edge("a-b", "a_b"),))
    text = render_mermaid(graph)
    assert '    s_a_b["a-b<br/>k"]' in text and '    s_a_b_2["a_b<br/>k"]' in text
    assert "    s_a_b --> s_a_b_2" in text


def test_unique_ids_are_kept_by_the_svg() -> None:
    ids = [f"step_{uuid.uuid4().hex[:6]}" for _ in range(5)]
    graph = Graph(nodes=tuple(Node(i, "k") for i in ids), edges=())
    assert list(nodes_of(render_svg(graph))) == ids


def test_graphs_the_validator_would_refuse_still_draw() -> None:
    cycle = Graph(
        nodes=(Node("a", "k"), Node("b", "k"), Node("c", "k")),
        edges=(Edge("a", "b"), Edge("b", "c"), Edge("c", "b"), Edge("c", "gone")),
    )
    assert layers_of(cycle) == {"a": 0, "b": 1, "c": 2}
    assert set(nodes_of(render_svg(cycle))) == {"a", "b", "c"}
    empty = Graph(nodes=(), edges=())
    assert nodes_of(render_svg(empty)) == {}
    assert render_mermaid(empty) == "flowchart TD\n"
