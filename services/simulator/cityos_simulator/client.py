"""The simulator's side of the ingestion HTTP API: register datasets, push batches, keep a tally."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import httpx
import msgspec

from cityos_contracts.datasets import DatasetRegistration
from cityos_kit.telemetry import logger

log = logger("cityos_simulator.client")


class Stopped(Exception):
    """The simulator was asked to stop while waiting."""


class _Version(msgspec.Struct):
    name: str
    version: int


class _Result(msgspec.Struct):
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicate: bool = False
    reasons: dict[str, int] = msgspec.field(default_factory=dict)


@dataclass
class Tally:
    batches: int = 0
    posted: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicate_batches: int = 0
    failed_batches: int = 0  # given up after retries
    reasons: Counter[str] = field(default_factory=Counter)


class Ingestion:
    def __init__(self, client: httpx.AsyncClient, stop: asyncio.Event, attempts: int = 4,
                 concurrency: int = 4) -> None:
        self.client = client
        self.stop = stop
        self.attempts = attempts
        self.tallies: dict[str, Tally] = {}
        # A fast-forwarded simulator must not open hundreds of requests at once.
        self._slots = asyncio.Semaphore(concurrency)

    async def pause(self, seconds: float) -> bool:
        """Sleep; True if asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def register(self, registration: DatasetRegistration) -> int:
        """The dataset's current version; waits (with backoff) until ingestion answers."""
        delay = 1.0
        while True:
            try:
                resp = await self.client.post("/datasets", content=msgspec.json.encode(registration),
                                              headers={"Content-Type": "application/json"})
                if resp.status_code in (200, 201):
                    return msgspec.json.decode(resp.content, type=_Version).version
                if resp.status_code < 500 and resp.status_code != 429:
                    raise RuntimeError(f"registering {registration.name} refused: "
                                       f"{resp.status_code} {resp.text[:500]}")
                problem = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            log.info("ingestion.waiting", dataset=registration.name, problem=problem,
                     retry_in_s=delay)
            if await self.pause(delay):
                raise Stopped
            delay = min(delay * 2, 15.0)

    async def post(self, dataset: str, version: int, body: bytes, content_type: str,
                   key: str, rows: int) -> _Result | None:
        """Push one batch; retries reuse the idempotency key so a lost answer cannot double it."""
        async with self._slots:
            return await self._post(dataset, version, body, content_type, key, rows)

    async def _post(self, dataset: str, version: int, body: bytes, content_type: str,
                    key: str, rows: int) -> _Result | None:
        tally = self.tallies.setdefault(dataset, Tally())
        tally.batches += 1
        tally.posted += rows
        problem = ""
        for attempt in range(self.attempts):
            try:
                resp = await self.client.post(
                    f"/datasets/{dataset}/records", params={"version": version}, content=body,
                    headers={"Content-Type": content_type, "Idempotency-Key": key})
                if resp.status_code == 200:
                    result = msgspec.json.decode(resp.content, type=_Result)
                    tally.accepted += result.accepted
                    tally.rejected += result.rejected
                    tally.duplicate_batches += result.duplicate
                    tally.reasons.update(result.reasons)
                    return result
                problem = f"HTTP {resp.status_code} {resp.text[:300]}"
                if resp.status_code < 500 and resp.status_code != 429:
                    break  # our request is wrong: retrying will not help
            except httpx.TransportError as exc:
                problem = repr(exc)
            if attempt + 1 < self.attempts:
                # Not cut short by a stop: the last tick's batches are flushed before exiting.
                await asyncio.sleep(0.5 * 2**attempt)
        tally.failed_batches += 1
        log.warning("batch.failed", dataset=dataset, key=key, rows=rows, problem=problem)
        return None
