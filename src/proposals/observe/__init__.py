"""Observability: OpenTelemetry spans named after the GenAI conventions, and run timelines.

Tracing uses ``opentelemetry-api`` alone and is a no-op until an SDK is installed:
:func:`setup_tracing` (called by the CLI and the server) installs one exporting over OTLP HTTP
when ``OTEL_EXPORTER_OTLP_*`` or the ``PROPOSALS_LANGFUSE_*`` settings name an endpoint.
"""

from ._timeline import Timeline, TimelineBuilder, TimelineCall, draw_timeline
from ._tracing import (
    ATTR,
    TRACER_NAME,
    RunTrace,
    TracingSetup,
    batch_span,
    chat_span,
    node_span,
    record_chat,
    run_span,
    setup_tracing,
)

__all__ = [
    "ATTR",
    "TRACER_NAME",
    "RunTrace",
    "Timeline",
    "TimelineBuilder",
    "TimelineCall",
    "TracingSetup",
    "batch_span",
    "chat_span",
    "draw_timeline",
    "node_span",
    "record_chat",
    "run_span",
    "setup_tracing",
]
