"""Citizens and grid workers reporting incidents to the event hub, as the city's channels would.

Each report is one of a category's example phrasings at a place on the road network; now and
then the same incident is reported again through another channel a few minutes later, nearby
and in other words, so the event hub's merging has real work to do.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec

from cityos_contracts.cases import ReporterContact, ReportIn
from cityos_kit.telemetry import logger
from cityos_simulator.roads import RoadNetwork

log = logger("cityos_simulator.citizens")
CHANNELS = ("hotline_12345", "citizen_app", "wechat", "grid_app", "police_110")
PREFIXES = ("", "你好，", "我要反映一下，", "麻烦尽快处理：", "")
SUFFIXES = ("", "，请尽快处理。", "，已经好几天了。", "，影响出行。", "！")


@dataclass
class Recent:
    report: ReportIn
    example: str


class Citizens:
    def __init__(self, categories: list[dict[str, Any]], network: RoadNetwork,
                 per_hour: float, seed: int = 0) -> None:
        self.categories = categories
        self.nodes = [tuple(f["geometry"]["coordinates"][0]) for f in network.features]
        self.per_hour = per_hour
        self.rng = random.Random(seed)
        self.recent: list[Recent] = []
        self.sent = 0

    def due(self, seconds: float) -> int:
        """How many reports arrive in `seconds` (Poisson-ish: the expected count, rounded by
        chance)."""
        expected = self.per_hour * seconds / 3600
        return int(expected) + (self.rng.random() < expected - int(expected))

    def report(self, now: datetime, key: str) -> ReportIn:
        rng = self.rng
        if self.recent and rng.random() < 0.25:  # the same incident, through another channel
            earlier = rng.choice(self.recent)
            lon = earlier.report.lon or 0.0
            lat = earlier.report.lat or 0.0
            return self._make(earlier.example, lon + rng.uniform(-3e-4, 3e-4),
                              lat + rng.uniform(-3e-4, 3e-4), now, key)
        category = rng.choice(self.categories)
        example = rng.choice(category["examples"])
        lon, lat = rng.choice(self.nodes)
        made = self._make(example, lon + rng.uniform(-5e-4, 5e-4),
                          lat + rng.uniform(-5e-4, 5e-4), now, key)
        self.recent = [*self.recent[-20:], Recent(made, example)]
        return made

    def _make(self, example: str, lon: float, lat: float, now: datetime, key: str) -> ReportIn:
        rng = self.rng
        text = rng.choice(PREFIXES) + example.rstrip("。！") + rng.choice(SUFFIXES)
        return ReportIn(
            channel=rng.choice(CHANNELS), text=text, lon=round(lon, 6), lat=round(lat, 6),
            reported_at=now - timedelta(seconds=rng.uniform(0, 60)),
            reporter=ReporterContact(phone=f"139{rng.randrange(10**8):08d}"),
            idempotency_key=key)

    async def send(self, http: httpx.AsyncClient, now: datetime, seconds: float,
                   key_prefix: str) -> None:
        """Post the reports due in the last `seconds`; an absent event hub is only logged."""
        for _ in range(self.due(seconds)):
            report = self.report(now, f"{key_prefix}-{self.sent}")
            try:
                response = await http.post("/reports", content=msgspec.json.encode(report),
                                           headers={"content-type": "application/json"})
                if response.status_code >= 400:
                    log.warning("report.refused", status=response.status_code,
                                detail=response.text[:300])
            except httpx.HTTPError as exc:
                log.info("report.event_hub_unreachable", error=repr(exc))
                return
            self.sent += 1
