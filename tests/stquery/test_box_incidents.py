"""Box select lists the open incidents inside the polygon, from the event hub's case events on
NATS, and drops a case once it is closed."""

import uuid
from datetime import UTC, datetime
from typing import Any

from data_platform.conftest import eventually
from stquery.conftest import at

from cityos_contracts.cases import CaseEvent, Location
from cityos_contracts.subjects import CASE_EVENTS
from cityos_kit.bus import Bus


def event(case_id: int, seq: int, status: str, lon: float | None = None,
          lat: float | None = None) -> CaseEvent:
    return CaseEvent(
        event_id=uuid.uuid4().hex, case_id=case_id, seq=seq, kind="received",  # type: ignore[arg-type]
        to_status=status, actor="test", actor_unit="CMD", at=datetime.now(UTC),  # type: ignore[arg-type]
        category="0101" if lon is not None else None,
        location=Location(lon=lon, lat=lat, source="point") if lon is not None else None)


async def test_open_incidents_inside_the_box(st: Any, make_settings: Any) -> None:
    case_id = 900_000 + uuid.uuid4().int % 100_000
    lon, lat = at(3000, 3000)
    (w, s), (e, n) = at(2900, 2900), at(3100, 3100)
    bus = Bus(make_settings("events"))
    await bus.connect()
    try:
        for ev in (event(case_id, 1, "received", lon, lat), event(case_id, 2, "accepted")):
            await bus.publish(CASE_EVENTS.format(case_id=str(case_id)), ev,
                              msg_id=f"case:{case_id}:{ev.seq}")

        async def listed() -> list[Any]:
            r = await st.post("/query/box", json={"bbox": [w, s, e, n], "datasets": ["cases"]})
            return [f for f in r.json()["features"] if f["properties"]["id"] == str(case_id)]

        # The consumer may first replay other tests' case events, and batches fetched by other
        # tests' stopped instances come back only after the ack wait: allow for both.
        (feature,) = await eventually(listed, timeout=180)
        props = feature["properties"]
        assert (props["kind"], props["group"], props["name"]) == (
            "incident", "cases/0101", "accepted")  # the place is kept from the first event
        await bus.publish(CASE_EVENTS.format(case_id=str(case_id)),
                          event(case_id, 3, "closed"), msg_id=f"case:{case_id}:3")

        async def gone() -> bool:
            return not await listed()

        await eventually(gone, timeout=90)
    finally:
        await bus.close()
