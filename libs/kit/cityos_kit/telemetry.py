"""OpenTelemetry tracing and structlog JSON logs that carry the trace id.

One trace per journey: the HTTP span's context is injected into NATS headers as W3C
`traceparent` on publish and extracted on consume, so the database write of a record sits in
the same trace as the request that brought it.
"""

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from cityos_kit.config import Settings

_provider: TracerProvider | None = None


def tracer_provider(service: str = "cityos") -> TracerProvider:
    """The process's provider: one per process, named after the first service that asks."""
    global _provider
    if _provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            _provider = current
        else:
            resource = Resource.create({"service.name": service, "service.namespace": "cityos"})
            _provider = TracerProvider(resource=resource)
            trace.set_tracer_provider(_provider)
    return _provider


def add_span_processor(processor: SpanProcessor) -> None:
    tracer_provider().add_span_processor(processor)


def tracer(name: str) -> trace.Tracer:
    return tracer_provider().get_tracer(name)


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


_configured = False


def setup_telemetry(settings: Settings) -> None:
    """Configure logs and tracing once per process; safe to call from every app."""
    global _configured
    if _configured:
        return
    _configured = True
    tracer_provider(settings.service)
    level = logging.getLevelName(settings.log_level.upper())
    logging.basicConfig(stream=sys.stdout, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))


def logger(name: str) -> Any:
    return structlog.get_logger(name)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context (W3C traceparent/tracestate) to message headers."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> Context:
    return propagate.extract(dict(headers or {}))
