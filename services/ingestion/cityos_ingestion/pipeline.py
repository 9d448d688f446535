"""One batch through the data express: parse, validate, publish, keep dead letters, count.

The caller is told "accepted" only after JetStream has acknowledged the normalised records,
so an accepted record survives a crash of this service. The batch id (the caller's
Idempotency-Key, or a new one) is the dedupe key all the way down: a retried batch is answered
from the batch record and republished chunks are dropped by JetStream's duplicate window.
"""

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec

from cityos_contracts.datasets import BatchResult, ContributionMetrics, DatasetVersion, DeadLetter
from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch
from cityos_contracts.subjects import CONTRIBUTION, ENTITIES, MEDIA, OBSERVATIONS, Subject
from cityos_ingestion.normalise import Normalised, Normaliser, Rejection, check_columns
from cityos_ingestion.parsing import BodyError, RowError, json_array, parse_body
from cityos_ingestion.store import IngestionStore
from cityos_kit.bus import Bus
from cityos_kit.city import BBox
from cityos_kit.telemetry import logger

log = logger("cityos.ingestion")


class UnknownDataset(LookupError):
    pass


class Pipeline:
    def __init__(self, store: IngestionStore, bus: Bus, bbox: BBox) -> None:
        self.store = store
        self.bus = bus
        self.bbox = bbox
        self._normalisers: dict[tuple[str, int], Normaliser] = {}

    async def resolve(self, dataset: str, version: int | None) -> DatasetVersion:
        found = await self.store.dataset(dataset, version)
        if found is None:
            if version is not None and await self.store.dataset(dataset) is not None:
                raise UnknownDataset(f"dataset `{dataset}` has no version {version}")
            raise UnknownDataset(f"no dataset named `{dataset}` is registered")
        return found

    def normaliser(self, dv: DatasetVersion) -> Normaliser:
        key = (dv.name, dv.version)
        if key not in self._normalisers:
            self._normalisers[key] = Normaliser(dv.registration, dv.version, self.bbox)
        return self._normalisers[key]

    async def push_body(self, dataset: str, version: int | None, body: bytes, content_type: str,
                        batch_id: str | None = None) -> BatchResult:
        """A body pushed over HTTP or imported from a file."""
        dv = await self.resolve(dataset, version)
        if batch_id and (earlier := await self.store.batch(batch_id)):
            return earlier
        batch_id = batch_id or uuid.uuid4().hex
        normaliser = self.normaliser(dv)
        if (array := json_array(body, content_type)) is not None and (
                records := normaliser.decode_array(array)) is not None:
            return await self._ingest(dv, records, [], [], batch_id)
        geometry_field = dv.registration.mapping.geometry or "geometry"
        parsed = parse_body(body, content_type, geometry_field)
        if parsed.columns is not None and (problem := check_columns(dv.registration,
                                                                    parsed.columns)):
            raise BodyError(f"CSV header does not match {dv.name} v{dv.version}: {problem}")
        records, rejections = normaliser.decode(parsed.rows, parsed.row_numbers,
                                                lax=parsed.columns is not None)
        return await self._ingest(dv, records, rejections, parsed.errors, batch_id)

    async def push_records(self, dataset: str, version: int | None,
                           records: list[dict[str, Any]], batch_id: str) -> BatchResult:
        """Records published on NATS (already JSON objects)."""
        dv = await self.resolve(dataset, version)
        if earlier := await self.store.batch(batch_id):
            return earlier
        typed, rejections = self.normaliser(dv).decode(
            records, list(range(1, len(records) + 1)), lax=False)
        return await self._ingest(dv, typed, rejections, [], batch_id)

    async def _ingest(self, dv: DatasetVersion, records: list[tuple[int, Any, Any]],
                      rejections: list[Rejection], errors: list[RowError],
                      batch_id: str) -> BatchResult:
        received_at = datetime.now(UTC)
        received = len(records) + len(rejections) + len(errors)
        out = self.normaliser(dv).normalise(batch_id, records, rejections, received_at)
        await self._publish(out.batch)
        letters = _dead_letters(dv, batch_id, errors, out, received_at)
        accepted = received - len(letters)
        reasons = Counter(["malformed"] * len(errors) + [r.code for r in out.rejections])
        result = BatchResult(batch_id=batch_id, dataset=dv.name, version=dv.version,
                             received=received, accepted=accepted, rejected=len(letters),
                             reasons=dict(reasons))
        tally = ContributionMetrics(
            department=dv.registration.owner, dataset=dv.name, window_start=received_at,
            window_end=received_at, received=received, accepted=accepted, rejected=len(letters),
            validity_rate=accepted / received if received else 1.0,
            completeness=(out.mapped_optional_present / out.mapped_optional_total
                          if out.mapped_optional_total else 1.0),
            freshness_mean_s=out.lag_sum_s / out.lag_count if out.lag_count else None,
            freshness_max_s=out.lag_max_s,
        )
        first = await self.store.record_batch(
            result, dv.registration.owner, received_at, letters, tally,
            (out.mapped_optional_present, out.mapped_optional_total),
            (out.lag_sum_s, out.lag_count))
        if not first:  # a concurrent retry of the same batch won the race
            earlier = await self.store.batch(batch_id)
            return earlier or result
        await self.bus.publish(CONTRIBUTION.format(owner=dv.registration.owner, dataset=dv.name),
                               tally, msg_id=f"contribution:{batch_id}")
        log.info("batch_ingested", dataset=dv.name, version=dv.version, batch_id=batch_id,
                 received=received, accepted=accepted, rejected=len(letters))
        return result

    async def _publish(self, batch: ObservationBatch | EntityBatch | MediaBatch) -> None:
        """In chunks of `size` records, each with its own dedupe id `<batch id>:<n>`."""
        subject, columns, size = _CHUNKING[type(batch)]
        count = len(getattr(batch, columns[0]))
        for n, start in enumerate(range(0, count, size)):
            chunk = msgspec.structs.replace(
                batch, batch_id=f"{batch.batch_id}:{n}",
                **{c: getattr(batch, c)[start:start + size] for c in columns})
            await self.bus.publish(subject.format(dataset=batch.dataset), chunk,
                                   msg_id=chunk.batch_id)


# Per kind of batch: its subject, its columns of records, and how many records fit a message
# (well under NATS's 1 MB default; entities carry geometries, so fewer of them).
_CHUNKING: dict[type, tuple[Subject, tuple[str, ...], int]] = {
    ObservationBatch: (OBSERVATIONS, ("subject", "ts", "lon", "lat", "speed_kmh", "heading",
                                      "value", "attrs"), 5000),
    EntityBatch: (ENTITIES, ("entities",), 1000),
    MediaBatch: (MEDIA, ("items",), 5000),
}


def _dead_letters(dv: DatasetVersion, batch_id: str, errors: list[RowError], out: Normalised,
                  received_at: datetime) -> list[DeadLetter]:
    letters = [DeadLetter(dv.name, dv.version, batch_id, e.row, e.reason, e.raw, received_at)
               for e in errors]
    letters += [DeadLetter(dv.name, dv.version, batch_id, r.row, r.reason,
                           msgspec.json.encode(r.record).decode(), received_at)
                for r in out.rejections]
    return letters
