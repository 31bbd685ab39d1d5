"""Pictures of DAGs: a definition's, and a run's coloured by step status (:mod:`starter.graph`).

``GET .../graph.svg`` answers ``image/svg+xml``; with ``?format=mermaid`` it answers the same
graph as Mermaid text (``text/plain``). A definition is read as ``GET`` of a definition reads
it (the tenant's own, else the instance's; 404 otherwise); a run is found as ``GET`` of a run
finds it (only the caller's tenant's runs), its graph is the definition version the run pinned
(from the start of its history), and its statuses come from its ``progress`` query.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, RootModel

from starter.api.common import RequestModel
from starter.graph import Graph, graph_of, render_mermaid, render_svg
from starter.repos import definitions as repo
from starter.routes.runs import OPEN_STATUSES, RUN, find_run
from starter.routes.table import Access, Call, Route
from workflows.definition import Definition
from workflows.types import RunStatus

SVG = "image/svg+xml"
MERMAID = "text/plain"

GraphFormat = Literal["svg", "mermaid"]


class GraphQuery(RequestModel):
    """How to answer: an SVG picture, or Mermaid text."""

    format: GraphFormat = Field(
        "svg", description="svg (image/svg+xml) or mermaid (text/plain, a flowchart TD)."
    )


class DefinitionGraphQuery(GraphQuery):
    """Which version to draw, and how."""

    version: int | None = Field(None, ge=1, description="A version; the current one if left out.")


class GraphPicture(RootModel[str]):
    """The DAG as an SVG document (image/svg+xml), or with ?format=mermaid as Mermaid text
    (text/plain). Steps are boxes (id, kind; for a run also status, attempts and for_each
    items), needs are arrows, fallbacks dashed arrows."""


async def definition_graph(call: Call[DefinitionGraphQuery]) -> web.Response:
    """A definition's DAG as an SVG picture (``?format=mermaid``: Mermaid text)."""
    row = await repo.readable(call.session, call.owner, call.path("name"))
    number = call.input.version or row.current_version
    version = await repo.get_version(call.session, row, number)
    definition = Definition.model_validate(version.content)
    graph = graph_of(definition, title=f"{definition.name} v{number}")
    return _answer(graph, call.input.format)


async def run_graph(call: Call[GraphQuery]) -> web.Response:
    """A run's DAG as an SVG picture coloured by step status (``?format=mermaid``: Mermaid)."""
    run = await find_run(call)
    progress, started = await asyncio.gather(run.progress(), run.start_input())
    if run.is_open:  # as GET of the run says it
        status = progress.status if progress.status in OPEN_STATUSES else RunStatus.RUNNING
    else:
        status = run.status
    title = f"{run.definition} v{progress.version} · run {run.key} · {status}"
    graph = graph_of(started.definition, progress.steps, title=title)
    return _answer(graph, call.input.format)


def _answer(graph: Graph, format: GraphFormat) -> web.Response:
    if format == "mermaid":
        return web.Response(text=render_mermaid(graph), content_type=MERMAID, charset="utf-8")
    return web.Response(text=render_svg(graph), content_type=SVG, charset="utf-8")


def definition_graph_routes(prefix: str, access: Access) -> list[Route[Any, Any]]:
    """The definition graph route under ``prefix`` for tenant or instance keys."""
    route: Route[Any, Any] = Route(
        "GET",
        f"{prefix}/definitions/{{name}}/graph.svg",
        definition_graph,
        GraphPicture,
        DefinitionGraphQuery,
        media_types=(SVG, MERMAID),
    )
    return [replace(route, access=access)]


ROUTES: list[Route[Any, Any]] = [
    *definition_graph_routes("/v1/instance", "instance"),
    *definition_graph_routes("/v1", "tenant"),
    Route(
        "GET",
        f"{RUN}/graph.svg",
        run_graph,
        GraphPicture,
        GraphQuery,
        tag="runs",
        media_types=(SVG, MERMAID),
    ),
]
"""The graph routes: definitions (tenant and instance keys) and runs (tenant keys)."""
