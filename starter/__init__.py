"""The dagflow starter service, its CLI and its Python client."""
