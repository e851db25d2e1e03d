"""CostGraph's benchmark suite: each workload against a ceiling measured in the same run.

Absolute numbers drift on shared machines, so every figure is reported as a ratio to a
ceiling — the same work done with the bare minimum (raw asyncpg, a bare Starlette route) —
measured in the same process tree, on the same database server, minutes apart at most.
Run everything with ``python -m bench`` from the repository root; see ``bench/run.py``.
"""
