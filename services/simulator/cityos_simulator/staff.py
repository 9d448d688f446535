"""Field staff on patrol, reported as each unit's device gateway would: a few people per unit go
on duty in dispatch, drive the roads of their unit's division, and every `interval_s` the unit's
gateway posts all their positions in one batch (dispatch's public field-staff API).

A gateway is an OAuth client bound to its unit with scope staff:report; the credentials come
from a file of lines `gateway <UNIT> client_id=<id> client_secret=<secret>` (the format of the
identity bootstrap file). Without it there is no feed.
"""

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from cityos_contracts.dispatch import DutyChange, PositionBatch, StaffPosition
from cityos_kit.city import City
from cityos_kit.client_auth import ClientCredentials
from cityos_kit.telemetry import logger
from cityos_simulator.fleet import Fleet
from cityos_simulator.roads import RoadNetwork, within

log = logger("cityos_simulator.staff")

# Patrol cars and e-bikes keep well under an expressway's design speed.
PATROL_KMH = 40.0
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰辉鹏飞斌宇浩凯健俊帆帅旭宁龙"
    "林欣佳琳晨阳雪婷倩文博志国建峰海波红云亮"
)


def chinese_names(n: int, rng: random.Random) -> list[str]:
    """Plausible, distinct full names: a common surname and one or two given characters."""
    names: list[str] = []
    while len(names) < n:
        given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        name = rng.choice(SURNAMES) + given
        if name not in names:
            names.append(name)
    return names


def read_gateways(path: Path) -> dict[str, tuple[str, str]]:
    """unit -> (client_id, client_secret); the last line of a unit wins."""
    found: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) < 4 or words[0] != "gateway":
            continue
        kv = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        if kv.get("client_id") and kv.get("client_secret"):
            found[words[1]] = (kv["client_id"], kv["client_secret"])
    return found


def division_of(city: City, unit: str) -> str:
    for u in city.units:
        if u["id"] == unit:
            return str(u["division"])
    raise ValueError(f"unit {unit!r} is not in the city's units.json")


def patrol_network(city: City, net: RoadNetwork, unit: str) -> RoadNetwork:
    """The roads a unit patrols: its division's (the whole city for a city-level unit)."""
    division = division_of(city, unit)
    polygons = [f["geometry"] for f in city.divisions["features"]
                if f["properties"]["code"] == division]
    return within(net, polygons or None, max_kmh=PATROL_KMH)


@dataclass
class Squad:
    """One unit's people on patrol, moving with the vehicles' motion model."""

    unit: str
    staff_ids: list[str]
    names: list[str]
    fleet: Fleet
    on_duty: set[str] = field(default_factory=set)  # dispatch has acknowledged

    @classmethod
    def of(cls, city: City, net: RoadNetwork, unit: str, size: int, start: float,
           seed: int) -> "Squad":
        # Seeded by the unit too: a unit's people are the same whoever else patrols.
        rng = random.Random(f"{seed}-{unit}")
        roads = patrol_network(city, net, unit)
        fleet = Fleet(roads, size, start, seed=rng.randrange(2**32))
        return cls(unit, [f"{unit}-{i + 1:03d}" for i in range(size)],
                   chinese_names(size, rng), fleet)

    def positions(self, now: float) -> list[StaffPosition]:
        fixes = self.fleet.positions(now)
        at = datetime.fromtimestamp(now, UTC)
        return [StaffPosition(staff_id=s, lon=round(float(lon), 6), lat=round(float(lat), 6),
                              at=at, speed_kmh=round(float(min(v, 300.0)), 1))
                for s, lon, lat, v in zip(self.staff_ids, fixes.lon, fixes.lat, fixes.speed_kmh,
                                          strict=True)]


class FieldStaff:
    """The gateways of several units: duty first, then a position batch per unit per interval
    (the units side by side, so one slow answer does not hold the others up)."""

    def __init__(self, squads: dict[str, Squad], gateways: dict[str, httpx.AsyncClient],
                 interval_s: float = 10.0) -> None:
        self.squads, self.gateways, self.interval_s = squads, gateways, interval_s
        self.sent = self.accepted = 0

    @classmethod
    def from_file(cls, path: Path, city: City, net: RoadNetwork, dispatch_url: str,
                  issuer: str, per_unit: int, seed: int, start: float,
                  interval_s: float = 10.0) -> "FieldStaff":
        creds = read_gateways(path)
        squads = {unit: Squad.of(city, net, unit, per_unit, start, seed) for unit in creds}
        gateways = {unit: httpx.AsyncClient(base_url=dispatch_url, timeout=30.0,
                                            auth=ClientCredentials(issuer, cid, secret))
                    for unit, (cid, secret) in creds.items()}
        return cls(squads, gateways, interval_s)

    async def close(self) -> None:
        await asyncio.gather(*(g.aclose() for g in self.gateways.values()))

    async def run(self, stop: asyncio.Event) -> None:
        """Report every `interval_s` until asked to stop."""
        while not stop.is_set():
            began = time.monotonic()
            await self.report(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(),
                                       max(0.0, self.interval_s - (time.monotonic() - began)))

    async def report(self, now: float) -> None:
        """One round: each unit's people on duty (those not yet), then their positions."""
        await asyncio.gather(*(self._unit(unit, now) for unit in self.squads))

    async def _unit(self, unit: str, now: float) -> None:
        squad, http = self.squads[unit], self.gateways[unit]
        batch = squad.positions(now)
        try:
            for person, name, where in zip(squad.staff_ids, squad.names, batch, strict=True):
                if person not in squad.on_duty:
                    change = DutyChange(on_duty=True, name=name, lon=where.lon, lat=where.lat)
                    status, _ = await self._post(http, f"/staff/{person}/duty", change, unit)
                    if status != 200:
                        return  # refused, or dispatch is away: again next interval
                    squad.on_duty.add(person)
            self.sent += len(batch)
            status, answer = await self._post(http, "/staff/positions", PositionBatch(batch),
                                              unit)
            self.accepted += int(answer.get("accepted", 0))
            if status == 404:  # dispatch has forgotten them (a new database): on duty again
                squad.on_duty.clear()
        except (httpx.HTTPError, PermissionError) as exc:
            log.info("staff.dispatch_unreachable", unit=unit, error=repr(exc))

    async def _post(self, http: httpx.AsyncClient, path: str, body: Any, unit: str
                    ) -> tuple[int, dict[str, Any]]:
        """The status and, if accepted, the answer; a refusal is logged with its reason."""
        response = await http.post(path, content=msgspec.json.encode(body),
                                   headers={"content-type": "application/json"})
        if response.status_code >= 400:
            log.warning("staff.refused", unit=unit, path=path, status=response.status_code,
                        detail=response.text[:300])
            return response.status_code, {}
        answer: dict[str, Any] = response.json()
        return response.status_code, answer

    def tally(self) -> dict[str, int]:
        return {"units": len(self.squads),
                "on_duty": sum(len(s.on_duty) for s in self.squads.values()),
                "positions_sent": self.sent, "positions_accepted": self.accepted}

    async def off_duty(self) -> None:
        """At shutdown: nobody is left on duty at a position that no longer moves."""
        async def unit_off(unit: str) -> None:
            squad, http = self.squads[unit], self.gateways[unit]
            for person in sorted(squad.on_duty):
                await self._post(http, f"/staff/{person}/duty", DutyChange(on_duty=False), unit)
            squad.on_duty.clear()

        try:
            await asyncio.wait_for(
                asyncio.gather(*(unit_off(u) for u in self.squads)), timeout=10.0)
        except (TimeoutError, httpx.HTTPError, PermissionError) as exc:
            log.info("staff.off_duty_incomplete", error=repr(exc))
