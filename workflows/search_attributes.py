"""The search attributes dagflow sets on runs, so the Web UI lists runs by tenant and status."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
DAG_NAME = SearchAttributeKey.for_keyword("DagName")
DAG_VERSION = SearchAttributeKey.for_int("DagVersion")
DAG_STATUS = SearchAttributeKey.for_keyword("DagStatus")
DAG_COMMAND = SearchAttributeKey.for_keyword("DagCommand")

ALL: tuple[SearchAttributeKey[str] | SearchAttributeKey[int], ...] = (
    TENANT_ID,
    DAG_NAME,
    DAG_VERSION,
    DAG_STATUS,
    DAG_COMMAND,
)


def run_attributes(
    tenant: str, name: str, version: int, command: str | None = None, status: str = "Running"
) -> TypedSearchAttributes:
    """The search attributes a run starts with."""
    pairs: list[SearchAttributePair[str] | SearchAttributePair[int]] = [
        SearchAttributePair(TENANT_ID, tenant),
        SearchAttributePair(DAG_NAME, name),
        SearchAttributePair(DAG_VERSION, version),
        SearchAttributePair(DAG_STATUS, status),
    ]
    if command:
        pairs.append(SearchAttributePair(DAG_COMMAND, command))
    return TypedSearchAttributes(pairs)
