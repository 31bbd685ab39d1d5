"""Repository functions: each takes the request's ``AsyncSession`` and never commits.

The caller owns the transaction (one per request). Every query about tenant data takes the
owner (a tenant id, or None for the instance) and filters on it in SQL.
"""
