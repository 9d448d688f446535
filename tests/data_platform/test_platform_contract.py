"""What every service offers SREs and callers: probes, metrics, API docs, one trace per journey,
and contract exports that cannot go stale."""

from typing import Any

from data_platform.conftest import eventually
from data_platform.test_ingestion import fix, ndjson, push
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cityos_contracts.export import stale_files
from cityos_kit.telemetry import add_span_processor


async def test_probes_metrics_and_docs(ingestion: Any, spatiotemporal: Any) -> None:
    for client in (ingestion, spatiotemporal):
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = (await client.get("/readyz")).json()
        assert ready == {"ready": True, "checks": {"database": True, "nats": True}}
        spec = (await client.get("/docs/openapi.json")).json()
        assert spec["info"]["title"].startswith("CityOS")
        metrics = (await client.get("/metrics")).text
        assert 'cityos_requests_total{app_name="' in metrics
    paths = (await ingestion.get("/docs/openapi.json")).json()["paths"]
    assert "/datasets/{name}/records" in paths


async def test_one_trace_from_http_request_through_nats_to_the_database(
        ingestion: Any, spatiotemporal: Any, gps_dataset: dict[str, Any]) -> None:
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    response = await push(ingestion, ndjson([fix("TRACE-1", 1)]), "application/x-ndjson")
    assert response.json()["accepted"] == 1

    def journey() -> set[str]:
        spans = exporter.get_finished_spans()
        http = [s for s in spans if s.name.startswith("POST /datasets")]
        trace_ids = {s.context.trace_id for s in http}
        return {s.name for s in spans if s.context.trace_id in trace_ids}

    async def written() -> bool:
        return "db copy observations" in journey()

    await eventually(written)
    assert {"publish obs.test_gps", "process obs.test_gps", "db copy observations"} <= journey()


def test_exported_contracts_are_up_to_date() -> None:
    assert stale_files() == [], "run `uv run cityos-contracts export` and commit the result"
