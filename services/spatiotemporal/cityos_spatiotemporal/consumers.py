"""The write side: normalised streams from ingestion into PostGIS, acked after commit."""

from nats.aio.msg import Msg

from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch
from cityos_contracts.subjects import ENTITIES, MEDIA, OBSERVATIONS, STREAMS
from cityos_kit.bus import Bus, Delivery
from cityos_spatiotemporal.store import SpatioTemporalStore

_STREAM = {s.name: s for s in STREAMS}


def start_consumers(bus: Bus, store: SpatioTemporalStore) -> None:
    async def on_observations(deliveries: list[Delivery[ObservationBatch]]) -> None:
        await store.write_observations(deliveries)

    async def on_entities(batch: EntityBatch, msg: Msg) -> None:
        await store.write_entities(batch)

    async def on_media(batch: MediaBatch, msg: Msg) -> None:
        await store.write_media(batch)

    bus.consume_batches(_STREAM["OBSERVATIONS"], "spatiotemporal-observations", ObservationBatch,
                        on_observations, filter_subject=OBSERVATIONS.wildcard(), batch=8)
    bus.consume(_STREAM["ENTITIES"], "spatiotemporal-entities", EntityBatch, on_entities,
                filter_subject=ENTITIES.wildcard())
    bus.consume(_STREAM["ENTITIES"], "spatiotemporal-media", MediaBatch, on_media,
                filter_subject=MEDIA.wildcard())
