"""What hazchem posted to the event hub in this test run: every report on `reports.system`."""

from typing import Any

import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cityos_kit.bus import Bus


async def hazchem_reports(bus: Bus) -> list[dict[str, Any]]:
    """Every hazchem report on the stream so far, read by a throwaway consumer (no acks)."""
    sub = await bus.js.pull_subscribe(bus.subject("reports.system"), durable=None,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL,
                                                            ack_policy=AckPolicy.NONE))
    found: list[dict[str, Any]] = []
    try:
        while True:
            found += [msgspec.json.decode(m.data) for m in await sub.fetch(200, timeout=1)]
    except (nats.errors.TimeoutError, TimeoutError):  # no more (nats-py raises either)
        pass
    finally:
        await sub.unsubscribe()
    return [m for m in found if str(m.get("idempotency_key", "")).startswith("hazchem:")]
