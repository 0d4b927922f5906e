"""Tracing: OpenTelemetry with OpenInference conventions, so Phoenix draws AGENT -> CHAIN -> LLM / TOOL.

Spans always go to a local collector (kept with the run record; `smol runs show RUN_ID --trace` draws them with
no Phoenix at all) and, when PHOENIX_ENABLED, to Phoenix over OTLP/HTTP. A Phoenix that is down or slow costs the
run at most EXPORT_TIMEOUT_S at the end and one warning line.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    from runner.config import Settings

EXPORT_TIMEOUT_S = 0.5
"""Longest a single OTLP export may take; also bounds the flush at the end of a run."""


@dataclass
class LocalSpans:
    """Finished spans as plain dicts, in the order they ended."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        attributes = {k: v if isinstance(v, str | int | float | bool) else str(v)
                      for k, v in (span.attributes or {}).items()}
        with self.lock:
            self.spans.append({
                "name": span.name,
                "span_id": f"{context.span_id:016x}" if context else "",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                "trace_id": f"{context.trace_id:032x}" if context else "",
                "start_ns": span.start_time or 0,
                "end_ns": span.end_time or 0,
                "status": span.status.status_code.name,
                "error": span.status.description or "",
                "kind": attributes.get("openinference.span.kind", ""),
                "attributes": attributes,
                "links": [{"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
                          for link in span.links],
            })


class Tracing:
    """One run's tracing set-up; `close()` flushes (bounded) and detaches the instrumentation."""

    def __init__(self, settings: Settings, *, warn: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self.local = LocalSpans()
        self._warn = warn or (lambda message: print(f"smol: warning: {message}", file=sys.stderr))
        resource = Resource.create({"service.name": "smol", "openinference.project.name": settings.phoenix_project})
        self.provider: TracerProvider = TracerProvider(resource=resource)
        # Our exporters are duck-typed, so the SDK is imported only here (lazily).
        self.provider.add_span_processor(SimpleSpanProcessor(cast(Any, _Collector(self.local))))
        self.exporter: _QuietExporter | None = None
        if settings.phoenix_enabled:
            self.exporter = _QuietExporter(settings.phoenix_endpoint, self._warn)
            self.provider.add_span_processor(BatchSpanProcessor(cast(Any, self.exporter), schedule_delay_millis=500,
                                                                export_timeout_millis=int(EXPORT_TIMEOUT_S * 1000)))
        # Our own spans (sandbox, tools, promotion) use the global provider.
        trace.set_tracer_provider(self.provider)
        self._instrumentor: Any = None
        self._root: Any = None
        self._token: Any = None
        try:
            from openinference.instrumentation.smolagents import SmolagentsInstrumentor

            self._instrumentor = SmolagentsInstrumentor()
            self._instrumentor.instrument(tracer_provider=self.provider)
        except ImportError:  # pragma: no cover - a dependency of the package
            self._warn("openinference-instrumentation-smolagents is missing: agent spans are not recorded")

    def start_root(self, name: str, attributes: dict[str, Any] | None = None,
                   link: tuple[str, str] | None = None) -> None:
        """Open the command's root span and make it current, so that every span of the command (sandbox starts,
        agent, diff, verification, promotion) lands in one trace. `link` is (trace_id, span_id) of the run this
        command continues (a later `smol promote`): its trace is linked, not reopened."""
        from opentelemetry import context, trace
        from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags

        if self._root is not None:
            return
        links = []
        if link is not None:
            trace_id, span_id = link
            linked = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                 trace_flags=TraceFlags(TraceFlags.SAMPLED))
            links.append(Link(NonRecordingSpan(linked).get_span_context()))
        span = trace.get_tracer("smol").start_span(
            name, attributes={"openinference.span.kind": "CHAIN", **(attributes or {})}, links=links)
        self._root = span
        self._token = context.attach(trace.set_span_in_context(span))

    def end_root(self) -> None:
        """End the root span (idempotent), so it is kept with the run record and exported."""
        from opentelemetry import context

        if self._root is None:
            return
        root, self._root = self._root, None
        if self._token is not None:
            try:
                context.detach(self._token)
            except ValueError:  # detached in another context (a signal unwound the stack): the span still ends
                pass
            self._token = None
        root.end()

    def close(self) -> None:
        self.end_root()
        if self._instrumentor is not None:
            self._instrumentor.uninstrument()
        self.provider.force_flush(timeout_millis=int(EXPORT_TIMEOUT_S * 1000))
        self.provider.shutdown()


class _Collector:
    """A SpanExporter that keeps spans locally (used with SimpleSpanProcessor: synchronous and cheap)."""

    def __init__(self, local: LocalSpans) -> None:
        self.local = local

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for span in spans:
            self.local.add(span)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


class _QuietExporter:
    """OTLP/HTTP with a short timeout; its failures become one warning line instead of log noise."""

    def __init__(self, endpoint: str, warn: Any) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(logging.CRITICAL)
        logging.getLogger("opentelemetry.sdk.trace.export").setLevel(logging.CRITICAL)
        self.endpoint = endpoint
        self._inner = OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_S)
        self._warn = warn
        self.failed = False
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.failed:
            return SpanExportResult.FAILURE  # Phoenix is down: do not pay the timeout again
        try:
            result = self._inner.export(spans)
        except Exception:  # noqa: BLE001 - the exporter must never break a run
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed = True
            self._warn(f"Phoenix is not reachable at {self.endpoint}; traces are kept locally "
                       "(`smol runs show RUN_ID --trace`)")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def render_trace(spans: list[dict[str, Any]]) -> list[str]:
    """The span tree as indented lines: name, kind, duration, errors."""
    if not spans:
        return ["(no spans recorded for this run)"]
    children: dict[str | None, list[dict[str, Any]]] = {}
    known = {span["span_id"] for span in spans}
    for span in sorted(spans, key=lambda s: s["start_ns"]):
        parent = span["parent_id"] if span["parent_id"] in known else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def draw(span: dict[str, Any], depth: int) -> None:
        duration_ms = (span["end_ns"] - span["start_ns"]) / 1e6
        kind = f" [{span['kind']}]" if span["kind"] else ""
        error = ""
        if span["status"] == "ERROR" or span["attributes"].get("tool.error_type"):
            error = f"  ERROR {span['error'] or span['attributes'].get('tool.error_type', '')}"
        lines.append(f"{'  ' * depth}{span['name']}{kind} {duration_ms:.1f} ms{error}")
        for child in children.get(span["span_id"], []):
            draw(child, depth + 1)

    for root in children.get(None, []):
        draw(root, 0)
    return lines
