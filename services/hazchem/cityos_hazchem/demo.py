"""The scenario generator's hazardous-goods data as a city's departments would deliver it: one
registration and one file per dataset, to load through ingestion like any other data.

    cityos-hazchem demo-data DIR [--day 2026-11-20] [--copies 1]

`./cityos run` loads it into the demo city so the live warnings, their cases and the risk index
have something to show; a city trying CityOS can do the same before its own feeds are connected.
The scenario is moved to `--day` (default: the latest day it ends before now) by whole days, so
local times — the night window, for one — stay as planted.
"""

import argparse
import csv
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec

from cityos_contracts.datasets import DatasetRegistration, FieldMapping, FieldSpec, FieldType
from cityos_hazchem import scenario
from cityos_hazchem.scenario import LOCAL, Scenario

GPS, ENTERPRISES, POIS, VEHICLES, TRIPS = (
    "hazchem_gps", "hazchem_enterprises", "hazchem_pois", "hazchem_vehicles", "hazchem_trips")
EPOCH = datetime(2020, 1, 1, tzinfo=LOCAL)  # "valid from" of records older than the scenario


def _f(name: str, type_: FieldType, required: bool = False, description: str = "") -> FieldSpec:
    return FieldSpec(name=name, type=type_, required=required, description=description)


# Owners: the Emergency Management Bureau (YJJ) licenses hazardous-goods enterprises; the
# Transport Bureau (JTJ) holds vehicles, their declared trips, their GPS and the POIs on roads.
REGISTRATIONS = (
    DatasetRegistration(
        name=ENTERPRISES, title="危化品企业 Hazardous-goods enterprises", owner="YJJ",
        kind="entity",
        fields=[_f("enterprise_id", "string", True), _f("name", "string", True),
                _f("credit_code", "string", description="unified social credit code"),
                _f("kind", "string", True, "producer, storage, user or disposer"),
                _f("status", "string", True, "operating, closed or suspended"),
                _f("status_since", "datetime", True, "when the status last changed"),
                _f("licence_no", "string"),
                _f("licence_valid_until", "string", description="local date, valid through it"),
                _f("lon", "number", True), _f("lat", "number", True)],
        mapping=FieldMapping(subject="enterprise_id", name="name", category="kind",
                             time="status_since", lon="lon", lat="lat")),
    DatasetRegistration(
        name=POIS, title="沿线兴趣点 POIs (gas stations, rest areas, parking)", owner="JTJ",
        kind="entity",
        fields=[_f("poi_id", "string", True), _f("name", "string", True),
                _f("kind", "string", True), _f("opened", "datetime", True),
                _f("lon", "number", True), _f("lat", "number", True)],
        mapping=FieldMapping(subject="poi_id", name="name", category="kind", time="opened",
                             lon="lon", lat="lat")),
    DatasetRegistration(
        name=VEHICLES, title="危化品车辆 Hazardous-goods vehicles", owner="JTJ", kind="entity",
        fields=[_f("plate", "string", True), _f("carrier", "string"),
                _f("licensed", "boolean", True, "licensed to operate"),
                _f("registered", "datetime", True, "since when the record holds"),
                _f("depot_lon", "number", True, "the carrier's registered parking place"),
                _f("depot_lat", "number", True)],
        mapping=FieldMapping(subject="plate", name="plate", time="registered", lon="depot_lon",
                             lat="depot_lat")),
    DatasetRegistration(
        name=TRIPS, title="危化品运输电子运单 Declared trips", owner="JTJ", kind="entity",
        fields=[_f("trip_id", "string", True), _f("vehicle", "string", True),
                _f("declared", "datetime", True, "when the waybill was filed"),
                _f("start", "datetime", True), _f("end", "datetime", True),
                _f("route", "geometry", True, "planned route, LineString")],
        mapping=FieldMapping(subject="trip_id", time="declared", geometry="route")),
    DatasetRegistration(
        name=GPS, title="危化品车辆GPS Hazardous-goods vehicle GPS", owner="JTJ",
        kind="observation",
        fields=[_f("plate", "string", True), _f("ts", "datetime", True),
                _f("lon", "number", True), _f("lat", "number", True)],
        mapping=FieldMapping(subject="plate", time="ts", lon="lon", lat="lat"),
        assume_timezone="Asia/Shanghai"),
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, LOCAL).isoformat()


def default_day(sc: Scenario, now: datetime) -> date:
    """The latest day to move the scenario to so that its last fix is already past."""
    last = max(float(tr.t.max()) for tr in sc.tracks)
    span = datetime.fromtimestamp(last, LOCAL) - scenario.DAY
    return (now.astimezone(LOCAL) - span - timedelta(days=1)).date()


def write(sc: Scenario, out: Path, day: date) -> dict[str, Path]:
    """Registrations (`<dataset>.registration.json`) and data files; returns dataset -> file."""
    out.mkdir(parents=True, exist_ok=True)
    shift = (datetime.combine(day, datetime.min.time(), LOCAL) - scenario.DAY).total_seconds()
    for reg in REGISTRATIONS:
        (out / f"{reg.name}.registration.json").write_bytes(msgspec.json.encode(reg))
    files = {name: out / f"{name}.{ext}" for name, ext in (
        (ENTERPRISES, "csv"), (POIS, "csv"), (VEHICLES, "csv"), (TRIPS, "geojson"),
        (GPS, "csv"))}

    e = sc.enterprises
    with files[ENTERPRISES].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["enterprise_id", "name", "credit_code", "kind", "status", "status_since",
                    "licence_no", "licence_valid_until", "lon", "lat"])
        for i in range(len(e)):
            since = float(e.status_since[i])
            until = float(e.licence_until[i]) if e.licence_until is not None else math.nan
            w.writerow([
                e.id[i], f"危化企业 {e.id[i]}",
                e.credit_code[i] if e.credit_code is not None else "", e.kind[i], e.status[i],
                EPOCH.isoformat() if math.isnan(since) else _iso(since + shift),
                e.licence_no[i] if e.licence_no is not None else "",
                # valid through a local day: the day before the instant it stops
                "" if math.isnan(until)
                else datetime.fromtimestamp(until + shift - 1, LOCAL).date().isoformat(),
                f"{e.lon[i]:.7f}", f"{e.lat[i]:.7f}"])
    p = sc.pois
    with files[POIS].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["poi_id", "name", "kind", "opened", "lon", "lat"])
        for i in range(len(p)):
            w.writerow([p.id[i], f"{p.kind[i]} {p.id[i]}", p.kind[i], EPOCH.isoformat(),
                        f"{p.lon[i]:.7f}", f"{p.lat[i]:.7f}"])
    with files[VEHICLES].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["plate", "carrier", "licensed", "registered", "depot_lon", "depot_lat"])
        for tr in sc.tracks:
            w.writerow([tr.vehicle, "示范危运公司", str(sc.licensed.get(tr.vehicle, True)).lower(),
                        EPOCH.isoformat(), *scenario.ORIGIN])
    files[TRIPS].write_bytes(msgspec.json.encode({"type": "FeatureCollection", "features": [
        {"type": "Feature",
         "geometry": {"type": "LineString",
                      "coordinates": [[float(x), float(y)] for x, y in zip(
                          trip.lon, trip.lat, strict=True)]},
         "properties": {"trip_id": trip.trip_id, "vehicle": trip.vehicle,
                        "declared": _iso(trip.start + shift - 3600),
                        "start": _iso(trip.start + shift), "end": _iso(trip.end + shift)}}
        for trip in sc.trips]}))
    # GPS in the order a gateway would log it: by time, noise (duplicates, outliers) included.
    rows = sorted((float(t) + shift, tr.vehicle, float(x), float(y)) for tr in sc.tracks
                  for t, x, y in zip(tr.t, tr.lon, tr.lat, strict=True))
    with files[GPS].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["plate", "ts", "lon", "lat"])
        for t, plate, x, y in rows:
            w.writerow([plate, _iso(t), f"{x:.7f}", f"{y:.7f}"])
    return files


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="cityos-hazchem demo-data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--day", type=date.fromisoformat, default=None)
    ap.add_argument("--copies", type=int, default=1, help="copies of each planted case")
    args = ap.parse_args(argv)
    sc = scenario.generate(copies=args.copies)
    day = args.day or default_day(sc, datetime.now(UTC))
    for name, path in write(sc, args.out, day).items():
        print(f"{name}\t{path}")
