"""Where a route deviation can be intercepted, in the spatio-temporal store: a road grid around
the scenario's copy 0 and traffic police positions (shared by the compute and live tests)."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from cityos_contracts.records import Entity, ObservationBatch
from cityos_hazchem import scenario
from cityos_kit.bus import Delivery

OLD = datetime(2020, 1, 1, tzinfo=UTC)
# Traffic police now: the nearest is off duty, the next of another unit; P-JJ1 should be named.
OFFICERS = [("P-OFF", (3500.0, -2500.0), "JJZD", False), ("P-GA", (3500.0, -2000.0), "GA", True),
            ("P-JJ1", (3000.0, -1500.0), "JJZD", True), ("P-JJ2", (8000.0, 1000.0), "JJZD", True)]


def road_grid() -> list[Entity]:
    """A 1 km grid of 36 km/h roads around copy 0's trips and its deviation."""
    xs, ys = range(-1000, 9000, 1000), range(-5000, 2000, 1000)
    lines = [((x, y), (x + 1000, y)) for x in xs[:-1] for y in ys] + \
            [((x, y), (x, y + 1000)) for x in xs for y in ys[:-1]]
    return [Entity(entity_id=f"R{i}", name=None, category="local", valid_from=OLD,
                   geometry={"type": "LineString",
                             "coordinates": [list(scenario.at(*a)), list(scenario.at(*b))]},
                   attrs={"speed_kmh": 36}) for i, (a, b) in enumerate(lines)]


async def write_officers(store: Any, dataset: str) -> None:
    now = datetime.now(UTC)
    pts = [scenario.at(*xy) for _, xy, _, _ in OFFICERS]
    batch = ObservationBatch(
        batch_id=f"staff-{uuid.uuid4().hex}", dataset=dataset, version=1, owner="CMD",
        subject=[o[0] for o in OFFICERS], ts=[now] * len(OFFICERS),
        lon=[p[0] for p in pts], lat=[p[1] for p in pts],
        attrs=[{"unit": u, "on_duty": d} for _, _, u, d in OFFICERS])
    await store.write_observations([Delivery(batch, SimpleNamespace(headers=None),  # type: ignore[arg-type]
                                             f"obs.{dataset}")])
