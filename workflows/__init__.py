"""Everything the interpreter needs that must be deterministic.

Definition models, validation, the expression language and DAG scheduling live here; nothing in
this package does I/O or reads a clock.
"""
