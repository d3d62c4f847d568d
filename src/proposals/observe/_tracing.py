"""OpenTelemetry spans for runs, nodes, batches and LLM calls, after the GenAI conventions.

The library speaks only ``opentelemetry-api``: until an application installs an SDK tracer
provider every span here is a non-recording no-op, and the helpers skip building attributes
for spans that do not record. :func:`setup_tracing` is what the CLI and the server call: it
installs the SDK (the ``otel`` extra) and an OTLP HTTP exporter when an endpoint is
configured (``OTEL_EXPORTER_OTLP_*``, or the ``PROPOSALS_LANGFUSE_*`` settings), and does
nothing otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "ATTR",
    "TRACER_NAME",
    "RunTrace",
    "TracingSetup",
    "batch_span",
    "chat_span",
    "node_span",
    "record_chat",
    "run_span",
    "setup_tracing",
]

TRACER_NAME = "proposals"


class ATTR:
    """Attribute names: the GenAI semantic conventions', then this project's own."""

    OPERATION = "gen_ai.operation.name"
    PROVIDER = "gen_ai.provider.name"
    REQUEST_MODEL = "gen_ai.request.model"
    RESPONSE_MODEL = "gen_ai.response.model"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    FINISH_REASONS = "gen_ai.response.finish_reasons"
    AGENT_NAME = "gen_ai.agent.name"
    CONVERSATION_ID = "gen_ai.conversation.id"
    INPUT_MESSAGES = "gen_ai.input.messages"
    OUTPUT_MESSAGES = "gen_ai.output.messages"
    ERROR_TYPE = "error.type"

    RUN_ID = "proposals.run.id"
    NODE = "proposals.node"
    BATCH = "proposals.batch"
    ITEMS = "proposals.batch.items"
    BATCH_TOKENS = "proposals.batch.tokens"
    COUNTRY = "proposals.country"
    PROFILE = "proposals.profile"
    RETRIES = "proposals.retries"
    CACHE_HIT = "proposals.cache_hit"
    COST = "proposals.cost_usd"


def _tracer() -> trace.Tracer:
    # Looked up per span: a provider installed after import is picked up (the API's proxy).
    return trace.get_tracer(TRACER_NAME)


def _set(span: Span, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if value is not None:
            span.set_attribute(key, value)


@contextlib.contextmanager
def _span(name: str, kind: SpanKind, attrs: Mapping[str, Any]) -> Iterator[Span]:
    with _tracer().start_as_current_span(
        name, kind=kind, record_exception=True, set_status_on_exception=True
    ) as span:
        if span.is_recording():
            _set(span, attrs)
        yield span


def run_span(
    run_id: str, *, countries: Sequence[str] = (), profiles: Sequence[str] = ()
) -> contextlib.AbstractContextManager[Span]:
    """The root span of one run (``invoke_workflow proposals``)."""
    return _span(
        "invoke_workflow proposals",
        SpanKind.INTERNAL,
        {
            ATTR.OPERATION: "invoke_workflow",
            ATTR.CONVERSATION_ID: run_id,
            ATTR.RUN_ID: run_id,
            ATTR.COUNTRY: list(countries) or None,
            ATTR.PROFILE: list(profiles) or None,
        },
    )


def node_span(run_id: str | None, node: str) -> contextlib.AbstractContextManager[Span]:
    """One graph node of a run (``invoke_agent <node>``)."""
    return _span(
        f"invoke_agent {node}",
        SpanKind.INTERNAL,
        {
            ATTR.OPERATION: "invoke_agent",
            ATTR.AGENT_NAME: node,
            ATTR.RUN_ID: run_id,
            ATTR.NODE: node,
        },
    )


def batch_span(
    run_id: str | None,
    node: str,
    batch: str,
    *,
    items: int,
    tokens: int,
    country: str | None = None,
    profile: str | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """One packed batch of a node: the LLM calls it makes are its children."""
    return _span(
        f"batch {node}",
        SpanKind.INTERNAL,
        {
            ATTR.RUN_ID: run_id,
            ATTR.NODE: node,
            ATTR.BATCH: batch,
            ATTR.ITEMS: items,
            ATTR.BATCH_TOKENS: tokens,
            ATTR.COUNTRY: country,
            ATTR.PROFILE: profile,
        },
    )


def chat_span(
    model: str, provider: str, *, run_id: str | None, node: str | None
) -> contextlib.AbstractContextManager[Span]:
    """One LLM call through the gateway (``chat <model>``, a client span)."""
    return _span(
        f"chat {model}",
        SpanKind.CLIENT,
        {
            ATTR.OPERATION: "chat",
            ATTR.PROVIDER: provider,
            ATTR.REQUEST_MODEL: model,
            ATTR.RUN_ID: run_id,
            ATTR.NODE: node,
        },
    )


def record_chat(
    span: Span,
    *,
    response_model: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    finish_reasons: Sequence[str] = (),
    retries: int = 0,
    cache_hit: bool = False,
    cost_usd: float | None = None,
    error_type: str | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    completion: str | None = None,
) -> None:
    """Put a call's outcome on its span. ``messages``/``completion`` are recorded only when
    given: callers pass them only when the user opted in to content capture."""
    if not span.is_recording():
        return
    _set(
        span,
        {
            ATTR.RESPONSE_MODEL: response_model,
            ATTR.INPUT_TOKENS: input_tokens,
            ATTR.OUTPUT_TOKENS: output_tokens,
            ATTR.FINISH_REASONS: [r for r in finish_reasons if r] or None,
            ATTR.RETRIES: retries,
            ATTR.CACHE_HIT: cache_hit,
            ATTR.COST: cost_usd,
            ATTR.ERROR_TYPE: error_type,
        },
    )
    if messages is not None:
        import json

        span.set_attribute(ATTR.INPUT_MESSAGES, json.dumps(list(messages), default=str))
    if completion is not None:
        import json

        span.set_attribute(
            ATTR.OUTPUT_MESSAGES,
            json.dumps([{"role": "assistant", "content": completion}]),
        )
    if error_type is not None:
        span.set_status(Status(StatusCode.ERROR, error_type))


class RunTrace:
    """The node spans of one run, shared by the run's graph tasks.

    A node fanned out into many tasks (a lens's batches, synthesis per pair) gets one node span
    that every task's own span hangs under; the first task opens it (under the span current
    there, the run's) and :meth:`end` closes it. Spans still open at :meth:`close` end then.
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self._parent: otel_context.Context | None = None
        self._nodes: dict[str, Span] = {}

    def node(self, node: str) -> otel_context.Context:
        """The context whose current span is ``node``'s span (opened on first use)."""
        span = self._nodes.get(node)
        if span is None:
            if self._parent is None:
                self._parent = otel_context.get_current()
            span = _tracer().start_span(
                f"invoke_agent {node}", context=self._parent, kind=SpanKind.INTERNAL
            )
            if span.is_recording():
                _set(
                    span,
                    {
                        ATTR.OPERATION: "invoke_agent",
                        ATTR.AGENT_NAME: node,
                        ATTR.RUN_ID: self.run_id,
                        ATTR.NODE: node,
                    },
                )
            self._nodes[node] = span
        return trace.set_span_in_context(span, self._parent)

    @contextlib.contextmanager
    def task(self, node: str, *, single: bool) -> Iterator[Span]:
        """Make ``node``'s span current for one graph task (``single``: the node has only
        this task, its span ends with it)."""
        ctx = self.node(node)
        token = otel_context.attach(ctx)
        span = trace.get_current_span(ctx)
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            if single:
                self.end(node)

    def end(self, node: str) -> None:
        span = self._nodes.pop(node, None)
        if span is not None:
            span.end()

    def close(self) -> None:
        for node in list(self._nodes):
            self.end(node)


# -- setup (CLI and server) -------------------------------------------------------------------


class TracingSetup:
    """What :func:`setup_tracing` installed; :meth:`shutdown` flushes and stops the exporter."""

    def __init__(self, provider: Any, endpoint: str | None) -> None:
        self.provider = provider
        self.endpoint = endpoint
        """Where spans go (``None``: an SDK without an exporter)."""

    def shutdown(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


def _endpoint(settings: Settings, environ: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The traces URL and extra headers, or ``("", {})`` when nothing is configured."""
    if settings.langfuse_host or settings.langfuse_public_key or settings.langfuse_secret_key:
        if not (
            settings.langfuse_host and settings.langfuse_public_key and settings.langfuse_secret_key
        ):
            raise ConfigError(
                "Langfuse tracing needs all of PROPOSALS_LANGFUSE_HOST, "
                "PROPOSALS_LANGFUSE_PUBLIC_KEY and PROPOSALS_LANGFUSE_SECRET_KEY"
            )
        pair = f"{settings.langfuse_public_key}:{settings.langfuse_secret_key}"
        token = base64.b64encode(pair.encode()).decode()
        url = settings.langfuse_host.rstrip("/") + "/api/public/otel/v1/traces"
        return url, {"Authorization": f"Basic {token}"}
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces, {}
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + "/v1/traces", {}
    return "", {}


def setup_tracing(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    force_sdk: bool = False,
) -> TracingSetup | None:
    """Install an SDK tracer provider exporting over OTLP HTTP when an endpoint is configured.

    Returns ``None`` (tracing stays a no-op) when no endpoint is configured, or when the
    application already installed its own provider (its configuration wins). ``force_sdk``
    installs the SDK even without an endpoint (spans recorded, then dropped: a benchmark's
    "SDK, no exporter" case). Raises :class:`ConfigError` when an endpoint is configured but the
    ``otel`` extra is not installed, or the protocol asked for is not HTTP.
    """
    env = os.environ if environ is None else environ
    url, headers = _endpoint(settings, env)
    if not url and not force_sdk:
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if url and protocol != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported; use http/protobuf"
        )
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "tracing is configured but the OpenTelemetry SDK is not installed: "
            "pip install 'proposals[otel]'"
        ) from exc
    service = env.get("OTEL_SERVICE_NAME") or "proposals"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if url:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "tracing is configured but the OTLP exporter is not installed: "
                "pip install 'proposals[otel]'"
            ) from exc
        # Headers from OTEL_EXPORTER_OTLP_HEADERS are read by the exporter; ours add to them.
        exporter = OTLPSpanExporter(endpoint=url, headers=headers or None)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return TracingSetup(provider, url or None)
