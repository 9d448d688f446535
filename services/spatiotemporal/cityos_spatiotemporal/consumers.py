"""The write side: normalised streams from ingestion into PostGIS, acked after commit; and the
incremental stay points, a separate durable consumer of the same observations."""

from datetime import datetime

from nats.aio.msg import Msg

from cityos_contracts.cases import CaseEvent
from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch
from cityos_contracts.subjects import CASE_EVENTS, ENTITIES, MEDIA, OBSERVATIONS, STREAMS
from cityos_kit.bus import Bus, Delivery
from cityos_spatiotemporal.queries.stays import StayTracker, Touch
from cityos_spatiotemporal.store import SpatioTemporalStore

_STREAM = {s.name: s for s in STREAMS}


def touches(batch: ObservationBatch) -> list[Touch]:
    """Each subject of a batch with the times of its earliest and latest fix in it."""
    span: dict[str, tuple[datetime, datetime]] = {}
    for subject, ts in zip(batch.subject, batch.ts, strict=True):
        lo, hi = span.get(subject, (ts, ts))
        span[subject] = (min(lo, ts), max(hi, ts))
    return [Touch(batch.dataset, s, lo, hi) for s, (lo, hi) in span.items()]


def start_consumers(bus: Bus, store: SpatioTemporalStore, tracker: StayTracker) -> None:
    async def on_observations(deliveries: list[Delivery[ObservationBatch]]) -> None:
        await store.write_observations(deliveries)

    async def on_entities(batch: EntityBatch, msg: Msg) -> None:
        await store.write_entities(batch)

    async def on_media(batch: MediaBatch, msg: Msg) -> None:
        await store.write_media(batch)

    async def on_fixes_for_stays(deliveries: list[Delivery[ObservationBatch]]) -> None:
        # Waits (NotYetStored -> retried later) until the storage consumer committed the fixes.
        await tracker.take_in([d.message.batch_id for d in deliveries],
                              [t for d in deliveries for t in touches(d.message)])

    bus.consume_batches(_STREAM["OBSERVATIONS"], "spatiotemporal-observations", ObservationBatch,
                        on_observations, filter_subject=OBSERVATIONS.wildcard(), batch=8)
    # Bigger batches: one recomputation covers every subject touched by up to 64 batches.
    bus.consume_batches(_STREAM["OBSERVATIONS"], "spatiotemporal-staypoints", ObservationBatch,
                        on_fixes_for_stays, filter_subject=OBSERVATIONS.wildcard(), batch=64,
                        max_deliver=200)
    bus.consume(_STREAM["ENTITIES"], "spatiotemporal-entities", EntityBatch, on_entities,
                filter_subject=ENTITIES.wildcard())
    bus.consume(_STREAM["ENTITIES"], "spatiotemporal-media", MediaBatch, on_media,
                filter_subject=MEDIA.wildcard())

    async def on_case_events(deliveries: list[Delivery[CaseEvent]]) -> None:
        await store.place_cases([d.message for d in deliveries])

    # In batches: a city's case history is replayed from the stream's start.
    bus.consume_batches(_STREAM["CASE_EVENTS"], "spatiotemporal-cases", CaseEvent,
                        on_case_events, filter_subject=CASE_EVENTS.wildcard(), batch=128)
