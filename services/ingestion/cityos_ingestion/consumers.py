"""Ingestion's stream handlers: raw batches departments publish on NATS, and dead letters."""

from nats.aio.msg import Msg

from cityos_contracts.datasets import DeadLetter
from cityos_contracts.records import RawRecordBatch
from cityos_contracts.subjects import DEAD_LETTERS, STREAMS
from cityos_ingestion.pipeline import Pipeline, UnknownDataset
from cityos_ingestion.store import IngestionStore
from cityos_kit.bus import Bus, PermanentError

_STREAM = {s.name: s for s in STREAMS}


def start_consumers(bus: Bus, pipeline: Pipeline, store: IngestionStore) -> None:
    async def on_raw(batch: RawRecordBatch, msg: Msg) -> None:
        # The batch id makes redelivery harmless: a recorded batch is answered, not redone.
        batch_id = batch.batch_id or (msg.headers or {}).get("Nats-Msg-Id") or (
            f"nats:{msg.metadata.sequence.stream}" if msg.metadata else "")
        try:
            await pipeline.push_records(batch.dataset, batch.version, batch.records, batch_id)
        except UnknownDataset as exc:
            raise PermanentError(str(exc)) from exc

    async def on_dead_letter(letter: DeadLetter, msg: Msg) -> None:
        await store.store_dead_letter(letter)

    bus.consume(_STREAM["INGEST_RAW"], "ingestion-raw", RawRecordBatch, on_raw)
    bus.consume(_STREAM["DEAD_LETTERS"], "ingestion-dead-letters", DeadLetter, on_dead_letter,
                filter_subject=DEAD_LETTERS.wildcard())
