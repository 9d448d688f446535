"""Field staff (the small screen): positions to the spatio-temporal engine, and the nearest
on-duty person of a unit from it.

Positions are kept here (latest per person) and forwarded, a batch per second, to ingestion as
raw records of the observation dataset `field_staff` (registered with ingestion once per city:
FIELD_STAFF_DATASET). The engine then answers "nearest on-duty staff of unit U" with its
nearest query over the latest positions, filtered by the attributes `unit` and `on_duty`.
"""

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from cityos_contracts.datasets import DatasetRegistration, FieldMapping, FieldSpec
from cityos_contracts.dispatch import AssignStaff, Task
from cityos_contracts.identity import Principal
from cityos_contracts.records import RawRecordBatch
from cityos_contracts.stquery import (
    BoxQuery,
    BoxSelection,
    NearestQuery,
    NearestResult,
    QueryError,
)
from cityos_contracts.subjects import BOX_QUERY, NEAREST_QUERY, RAW_RECORDS
from cityos_dispatch.config import DispatchSettings
from cityos_dispatch.hub import HubRefused
from cityos_dispatch.store import Conflict, DispatchStore, NotFound
from cityos_kit.bus import Bus
from cityos_kit.telemetry import inject_headers, logger

if TYPE_CHECKING:
    from cityos_dispatch.dispatcher import Dispatcher

log = logger("cityos.dispatch.staff")

FIELD_STAFF_DATASET = DatasetRegistration(
    name="field_staff", title="Field staff positions", owner="CMD", kind="observation",
    fields=[FieldSpec("staff_id", "string", required=True),
            FieldSpec("ts", "datetime", required=True),
            FieldSpec("lon", "number", required=True), FieldSpec("lat", "number", required=True),
            FieldSpec("speed", "number", unit="km/h"),
            FieldSpec("unit", "string", required=True,
                      description="the unit the person works for"),
            FieldSpec("on_duty", "boolean", required=True)],
    mapping=FieldMapping(subject="staff_id", time="ts", lon="lon", lat="lat", speed="speed"),
    description="Positions of the city's field staff (grid workers, inspectors), reported "
                "through dispatch; `unit` and `on_duty` ride along as attributes.",
)


class QueryFailed(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Position:
    staff_id: str
    unit: str
    lon: float
    lat: float
    at: datetime
    on_duty: bool
    speed_kmh: float | None = None


_nearest_reply: msgspec.json.Decoder[NearestResult | QueryError] = msgspec.json.Decoder(
    NearestResult | QueryError)
_box_reply: msgspec.json.Decoder[BoxSelection | QueryError] = msgspec.json.Decoder(
    BoxSelection | QueryError)


class Positions:
    """Collects positions and writes them, once per `flush_s`, here and to ingestion."""

    def __init__(self, bus: Bus, store: DispatchStore, settings: DispatchSettings) -> None:
        self.bus, self.store, self.settings = bus, store, settings
        self._pending: list[Position] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, position: Position) -> None:
        self._pending.append(position)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="staff-positions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.bus.connected:  # else the service's lifespan closed NATS first: at most
            with contextlib.suppress(Exception):  # the last flush_s of positions is lost
                await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.position_flush_s)
            try:
                await self.flush()
            except Exception as exc:  # kept: the next flush retries them
                if not self.bus.connected:
                    return  # shutting down
                log.warning("position_flush_failed", error=repr(exc))

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            latest: dict[str, Position] = {}
            for p in batch:
                if p.staff_id not in latest or latest[p.staff_id].at <= p.at:
                    latest[p.staff_id] = p
            await self.store.positions([(p.staff_id, p.unit, p.lon, p.lat, p.at)
                                        for p in latest.values()])
            batch_id = f"dispatch-{uuid.uuid4().hex}"
            records: list[dict[str, Any]] = [
                {"staff_id": p.staff_id, "ts": p.at.isoformat(), "lon": p.lon, "lat": p.lat,
                 "speed": p.speed_kmh, "unit": p.unit, "on_duty": p.on_duty} for p in batch]
            await self.bus.publish(
                RAW_RECORDS.format(dataset=self.settings.staff_dataset),
                RawRecordBatch(dataset=self.settings.staff_dataset,
                               version=self.settings.staff_dataset_version, records=records,
                               batch_id=batch_id), msg_id=batch_id)
        except Exception:
            self._pending = batch + self._pending
            raise


async def _request(bus: Bus, subject: str, query: msgspec.Struct, timeout: float) -> bytes:
    try:
        msg = await bus.nc.request(bus.subject(subject), msgspec.json.encode(query),
                                   timeout=timeout, headers=inject_headers({}))
    except Exception as exc:  # no responders, timeout
        raise QueryFailed(503, f"the spatio-temporal service did not answer: {exc!r}") from exc
    data: bytes = msg.data
    return data


async def nearest_on_duty(bus: Bus, settings: DispatchSettings, unit: str, lon: float,
                          lat: float, max_distance_m: float | None, k: int = 5
                          ) -> NearestResult:
    query = NearestQuery(dataset=settings.staff_dataset, lon=lon, lat=lat, k=k, kind="mobile",
                         max_age_s=settings.position_max_age_s, max_distance_m=max_distance_m,
                         attrs={"unit": unit, "on_duty": True})
    reply = _nearest_reply.decode(await _request(bus, NEAREST_QUERY.pattern, query,
                                                 settings.query_timeout_s))
    if isinstance(reply, QueryError):
        raise QueryFailed(reply.status, reply.detail)
    return reply


async def box_select(bus: Bus, settings: DispatchSettings, polygon: dict[str, Any]
                     ) -> BoxSelection:
    reply = _box_reply.decode(await _request(
        bus, BOX_QUERY.pattern, BoxQuery(polygon=polygon, mobile_max_age_s=min(
            settings.position_max_age_s, 7 * 86400)), settings.query_timeout_s))
    if isinstance(reply, QueryError):
        raise QueryFailed(reply.status, reply.detail)
    return reply


def now() -> datetime:
    return datetime.now(UTC)


async def assign(d: "Dispatcher", case_id: int, body: AssignStaff, principal: Principal
                 ) -> Task:
    """Give the case to a person of its lead unit: the one named, or the nearest on duty."""
    a = await d.store.current(d.pool, case_id)
    if a is None:
        raise NotFound(f"case {case_id} has not been dispatched")
    d.check_actor(principal, a, "assign")
    if a.state not in ("dispatched", "accepted"):
        raise Conflict(f"case {case_id} is {a.state}: nothing to assign")
    distance: float | None = None
    if body.staff_id is not None:
        member = await d.store.staff(body.staff_id)
        if member is None or member.unit != a.lead:
            raise NotFound(f"no field staff {body.staff_id!r} in unit {a.lead}")
        staff_id, how = member.staff_id, "named"
    else:
        if a.lon is None or a.lat is None:
            raise Conflict(f"case {case_id} has no point: name the person")
        found = await nearest_on_duty(d.journal.bus, d.settings, a.lead, a.lon, a.lat,
                                      body.max_distance_m)
        if not found.features:
            raise Conflict(f"no on-duty field staff of {a.lead} has reported a position "
                           f"within {d.settings.position_max_age_s:g} s"
                           + (f" and {body.max_distance_m:g} m" if body.max_distance_m else ""))
        nearest = found.features[0].properties
        staff_id, distance, how = nearest.id, nearest.distance_m, "nearest on duty"
    text = body.reason or f"case {case_id}"
    async with d.pool.acquire() as conn, conn.transaction():
        task = await d.store.add_task(conn, staff_id, a.lead, case_id, a.emergency_id, text,
                                      distance)
        await d.store.set_assignment(conn, case_id, a.round_seq, staff_id=staff_id)
    note = f"assigned to {staff_id} ({how}" + (f", {distance:.0f} m" if distance is not None
                                                else "") + ")"
    await d.journal.record(case_id, "staff_assigned", actor=principal.sub, unit=a.lead,
                           round_seq=a.round_seq, staff_id=staff_id, distance_m=distance,
                           reason=note)
    try:
        await d.hub.act(case_id, "note", reason=note)
    except HubRefused as exc:
        log.info("assignment_not_noted_on_case", case_id=case_id, detail=exc.detail)
    return task
