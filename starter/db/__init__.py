"""The service's database: tables, engine and sessions."""

from starter.db.engine import create_engine, database_url, ping, session_factory
from starter.db.models import (
    ApiKey,
    Base,
    Binding,
    CommandRecord,
    DefinitionVersion,
    StoredDefinition,
    Tenant,
)

__all__ = [
    "ApiKey",
    "Base",
    "Binding",
    "CommandRecord",
    "DefinitionVersion",
    "StoredDefinition",
    "Tenant",
    "create_engine",
    "database_url",
    "ping",
    "session_factory",
]
