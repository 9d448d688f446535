"""Ingestion's HTTP API: register datasets, push records, read dead letters and contribution."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, PermissionDeniedException
from litestar.params import HeaderParameter, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from cityos_contracts.datasets import (
    BatchResult,
    ContributionMetrics,
    DatasetRegistration,
    DatasetVersion,
)
from cityos_contracts.subjects import DATASET_VERSIONS
from cityos_ingestion import registration
from cityos_ingestion.consumers import start_consumers
from cityos_ingestion.parsing import BodyError
from cityos_ingestion.pipeline import Pipeline, UnknownDataset
from cityos_ingestion.store import IngestionStore
from cityos_kit.app import create_service_app
from cityos_kit.auth import AuthPlugin, current_principal, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings
from cityos_kit.times import check_times

SCHEMA = "ingestion"
# A dataset version as a query parameter: a positive Postgres integer.
Version = Annotated[int | None, Parameter(ge=1, le=2**31 - 1,
                                          description="dataset version; latest when omitted")]
MIGRATIONS = Path(__file__).parent / "migrations"


def _pipeline(state: State) -> Pipeline:
    pipeline: Pipeline = state.pipeline
    return pipeline


class Unprocessable(ClientException):
    status_code = 422


def _check_owner(request: Request[Any, Any, Any], owner: str, dataset: str) -> None:
    """A department works on its own datasets; the command center (and SREs) on all."""
    principal = current_principal(request)
    if not (principal.sees_all_units() or principal.department == owner):
        raise PermissionDeniedException(
            detail=f"dataset `{dataset}` belongs to {owner}; unit {principal.unit} "
                   f"({principal.department}) may not use it")


async def _owned_dataset(request: Request[Any, Any, Any], state: State, name: str,
                         version: Version = None) -> DatasetVersion:
    try:
        dv = await _pipeline(state).resolve(name, version)
    except UnknownDataset as exc:
        raise NotFoundException(detail=str(exc)) from exc
    _check_owner(request, dv.registration.owner, name)
    return dv


@post("/datasets", status_code=HTTP_201_CREATED, tags=["datasets"], opt=scope("ingest:admin"))
async def register_dataset(data: JSONBody[DatasetRegistration], state: State,
                           request: Request[Any, Any, Any]) -> Response[DatasetVersion]:
    """Register a dataset, or a new version of it when the registration changed."""
    _check_owner(request, data.owner, data.name)
    found = registration.problems(data, set(state.city.departments))
    if found:
        raise Unprocessable(detail="; ".join(found))
    try:
        version, created = await state.store.register(data)
    except PermissionError as exc:
        raise ClientException(detail=str(exc), status_code=409) from exc
    if created:
        await state.bus.publish(DATASET_VERSIONS.format(dataset=data.name), version,
                                msg_id=f"dataset:{data.name}:{version.version}")
    return Response(version, status_code=HTTP_201_CREATED if created else HTTP_200_OK)


@get("/datasets", tags=["datasets"], opt=scope("ingest:read"))
async def list_datasets(state: State, request: Request[Any, Any, Any],
                        owner: str | None = None) -> list[DatasetVersion]:
    """The latest version of every dataset the caller's department owns (all, for the
    command center; filter by `owner`)."""
    principal = current_principal(request)
    if not principal.sees_all_units():
        if owner not in (None, principal.department):
            raise PermissionDeniedException(detail=f"unit {principal.unit} may not list "
                                                   f"{owner}'s datasets")
        owner = principal.department
    datasets: list[DatasetVersion] = await state.store.datasets(owner)
    return datasets


@get("/datasets/{name:str}", tags=["datasets"], opt=scope("ingest:read"))
async def get_dataset(name: str, state: State, request: Request[Any, Any, Any],
                      version: Version = None) -> DatasetVersion:
    return await _owned_dataset(request, state, name, version)


@get("/datasets/{name:str}/versions", tags=["datasets"], opt=scope("ingest:read"))
async def list_versions(name: str, state: State,
                        request: Request[Any, Any, Any]) -> list[DatasetVersion]:
    await _owned_dataset(request, state, name)
    versions: list[DatasetVersion] = await state.store.versions(name)
    return versions


@post("/datasets/{name:str}/records", status_code=HTTP_200_OK, tags=["records"],
      opt=scope("ingest:write", per="name"))
async def push_records(
    name: str,
    request: Request[Any, Any, Any],
    state: State,
    version: Version = None,
    idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
) -> BatchResult:
    """Push a batch: a JSON array, NDJSON, CSV (UTF-8 or GBK) or a GeoJSON FeatureCollection.

    The answer always satisfies received = accepted + rejected; rejected records are in the
    dataset's dead letters with their reasons. Re-sending a batch with the same Idempotency-Key
    returns the first answer (with `duplicate: true`) and stores nothing twice.
    """
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise ClientException(detail="Idempotency-Key must be 1 to 200 characters")
    await _owned_dataset(request, state, name, version)
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    try:
        return await _pipeline(state).push_body(name, version, body, content_type,
                                                idempotency_key)
    except UnknownDataset as exc:
        raise NotFoundException(detail=str(exc)) from exc
    except BodyError as exc:
        raise ClientException(detail=str(exc)) from exc


@get("/batches/{batch_id:str}", tags=["records"], opt=scope("ingest:read"))
async def get_batch(batch_id: str, state: State, request: Request[Any, Any, Any]) -> BatchResult:
    result: BatchResult | None = await state.store.batch(batch_id)
    if result is None:
        raise NotFoundException(detail=f"no batch `{batch_id}`")
    await _owned_dataset(request, state, result.dataset)
    return result


@get("/datasets/{name:str}/dead-letters", tags=["dead letters"], opt=scope("ingest:read"))
async def list_dead_letters(
    name: str, state: State, request: Request[Any, Any, Any],
    after_id: Annotated[int, Parameter(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100, batch_id: str | None = None,
) -> list[dict[str, Any]]:
    """Rejected records with their reasons, oldest first; page with `after_id`."""
    await _owned_dataset(request, state, name)
    letters: list[dict[str, Any]] = await state.store.dead_letters(name, after_id, limit,
                                                                   batch_id)
    return letters


@get("/datasets/{name:str}/dead-letters.ndjson", tags=["dead letters"],
     media_type="application/x-ndjson", opt=scope("ingest:read"))
async def download_dead_letters(name: str, state: State, request: Request[Any, Any, Any],
                                batch_id: str | None = None) -> Response[bytes]:
    """All dead letters of a dataset as one NDJSON file."""
    await _owned_dataset(request, state, name)
    lines, after = [], 0
    while page := await state.store.dead_letters(name, after, 1000, batch_id):
        lines += [msgspec.json.encode(r) for r in page]
        after = page[-1]["id"]
    return Response(b"\n".join(lines) + b"\n" if lines else b"", media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{name}-dead-letters'
                                                    f'.ndjson"'})


@get("/contribution", tags=["contribution"], opt=scope("ingest:read"))
async def contribution(
    state: State, request: Request[Any, Any, Any], department: str | None = None,
    dataset: str | None = None,
    start: datetime | None = None, end: datetime | None = None,
) -> list[ContributionMetrics]:
    """Volume, validity, completeness and freshness per department and dataset (default: 24 h)."""
    principal = current_principal(request)
    if not principal.sees_all_units():
        department = department or principal.department
        if department != principal.department:
            raise PermissionDeniedException(detail=f"unit {principal.unit} may not read "
                                                   f"{department}'s contribution")
    check_times(start, end)
    end = end or datetime.now(UTC) + timedelta(hours=1)
    start = start or end - timedelta(hours=25)
    metrics: list[ContributionMetrics] = await state.store.contribution(department, dataset,
                                                                        start, end)
    return metrics


ROUTES = [register_dataset, list_datasets, get_dataset, list_versions, push_records, get_batch,
          list_dead_letters, download_dead_letters, contribution]


def build_app(settings: Settings, auth: AuthPlugin | None = None) -> Litestar:
    city = City(settings.city_dir)

    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        store = IngestionStore(pool)
        pipeline = Pipeline(store, bus, city.bbox)
        app.state.update(store=store, bus=bus, city=city, pipeline=pipeline)
        start_consumers(bus, pipeline, store)

    return create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS, route_handlers=ROUTES, start=start,
        auth=auth, title="CityOS ingestion (data express)",
        description="Register datasets and push records; read dead letters and data "
                    "contribution.",
    )
