"""A storage process killed with SIGKILL mid-stream loses nothing and doubles nothing."""

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from data_platform.conftest import eventually, stored_of
from data_platform.test_ingestion import fix, ndjson, push

PORT = 18702


async def start_store(settings: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CITYOS_DATABASE_URL": settings.database_url,
           "CITYOS_NATS_PREFIX": settings.nats_prefix, "CITYOS_HTTP_PORT": str(PORT),
           # Redelivery of what the killed process held, after 3 s rather than a minute.
           "CITYOS_ACK_WAIT_S": "3", "CITYOS_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(  # noqa: ASYNC220 - a real process, to kill it for real
        [sys.executable, "-m", "cityos_spatiotemporal.main"], env=env)

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{PORT}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready, timeout=60)
    return process


async def test_sigkill_of_the_store_mid_stream(ingestion: Any, gps_dataset: dict[str, Any],
                                               make_settings: Any, database_url: str) -> None:
    settings = make_settings("spatiotemporal")
    start = datetime.now(UTC) - timedelta(hours=3)
    bodies = [ndjson([fix(f"CRASH-{v}", 0) | {"ts": (start + timedelta(seconds=b)).isoformat()}
                      for v in range(500)]) for b in range(60)]
    process = await start_store(settings)
    accepted = 0
    try:
        for i, body in enumerate(bodies):
            accepted += (await push(ingestion, body, "application/x-ndjson")).json()["accepted"]
            if i == 30:  # some batches are stored, some are in flight: kill it there
                await eventually(lambda: _some_stored(database_url), timeout=30)
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
        process = await start_store(settings)

        async def all_stored() -> bool:
            return await stored_of(database_url, "CRASH-%") == accepted

        await eventually(all_stored, timeout=90)
        await asyncio.sleep(4)  # past the ack wait: nothing more may arrive
        assert await stored_of(database_url, "CRASH-%") == accepted == 60 * 500
    finally:
        process.kill()
        process.wait(timeout=10)


async def _some_stored(database_url: str) -> bool:
    return await stored_of(database_url, "CRASH-%") > 0
