"""Observability: structured logs with request context, Prometheus metrics, optional tracing.

- ``context``: the request's id, principal and organisation (context variables);
- ``logging`` and ``redaction``: the one log handler (JSON or text) and its secret scrubbing;
- ``middleware``: per request, its id, its access line and the HTTP metrics;
- ``operations``: per GraphQL operation, its log fields and metrics (a schema extension);
- ``counting``: business counters from the resolvers' typed results;
- ``metrics`` and ``gauges``: the per-app registry, ``/metrics``, scrape-time gauges;
- ``tracing``: OpenTelemetry, imported only when switched on;
- ``wiring``: all of it as ``app/main.py`` plugs it in.
"""
