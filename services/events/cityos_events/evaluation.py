"""How well duplicate reports are merged: a labelled set and the figures on it.

    python -m cityos_events.evaluation generate [--seed 20261001] [--out FILE]
    python -m cityos_events.evaluation fit [--seed 777]
    python -m cityos_events.evaluation score [FILE]

writes `data/merge_eval.jsonl`: reports of made-up incidents in the demo city, each labelled
with its incident, as channels would send them (hotline calls with only an address, app
reports with GPS noise, camera detections with a formulaic text). Hard negatives are built in:
*siblings* (same category, same place or next door, same day, a different incident: another
gate, another pile) and *neighbours* (same place and time, a different category). Times are
minutes from a base the test chooses, so the set can be replayed at any date.

`fit` fits the merge model (merge.py) on a *different* set, generated with another seed, so the
figures on `merge_eval.jsonl` are on reports the weights never saw. `score` runs the merging
in memory (the same Merger as the service, the store's rules) and prints the figures; the
test suite measures them through the running service instead.

Figures: pairwise precision/recall/F1 over all pairs of reports, and B-cubed F1 (per report:
how much of its predicted case is its incident, and of its incident its predicted case).
"""

import argparse
import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cityos_contracts.cases import Classification
from cityos_events.classify import for_city
from cityos_events.config import DATA, EventsSettings
from cityos_events.location import Locator
from cityos_events.merge import (
    FEATURES,
    MODEL_FILE,
    Candidate,
    Merger,
    PairModel,
    Sighting,
    probabilities,
)
from cityos_events.store import MERGEABLE_PRECISION_M
from cityos_kit.city import City
from cityos_kit.config import load_settings

EVAL_FILE = DATA / "merge_eval.jsonl"

# Where at a place an incident is: (name, metres east, metres north) from the place's point.
SPOTS = [("北门", 0, 140), ("南门", 0, -150), ("东门口", 160, 0), ("西侧围墙外", -170, 20),
         ("3号楼下", 60, 60), ("12号楼旁", -80, 90), ("地下车库入口", 90, -70),
         ("公交站旁", 200, 120), ("停车场", -120, -110), ("东侧路边", 230, -30)]

# Per category: how people say it ({p} the place, {d} the incident's detail), the details
# that tell one incident from another, and what a camera says.
TEMPLATES: dict[str, dict[str, Any]] = {
    "0101": {"say": ["{p}{d}，好几天没人清理了", "{p}有人乱倒垃圾，{d}，臭味很大",
                     "反映{p}的垃圾问题，{d}，请环卫来清运", "{p}{d}，苍蝇蚊子很多"],
             "d": ["堆了一大堆装修垃圾", "垃圾桶满得溢出来", "扔了好多旧沙发床垫",
                   "建筑垃圾堆成了小山", "生活垃圾袋堆在路边", "烂菜叶和泡沫箱堆了一地"],
             "cam": "暴露垃圾"},
    "0103": {"say": ["{p}{d}", "{p}又被人{d}，刚清理过又来了", "举报{p}{d}，影响市容"],
             "d": ["墙上贴满了开锁小广告", "地上喷了很多办证电话", "电线杆上贴满牛皮癣",
                   "配电箱贴满招租小广告"], "cam": None},
    "0201": {"say": ["{p}{d}，占道经营", "{p}{d}，行人只能走机动车道", "{p}每天{d}，城管管一管"],
             "d": ["有流动摊贩卖烧烤", "三轮车卖水果堵了路", "摆满了卖菜的地摊",
                   "有人推车卖早点", "夜市小吃摊占了人行道"], "cam": "占道经营"},
    "0203": {"say": ["{p}{d}", "{p}{d}，盲道都被占了", "{p}{d}，进出很不方便"],
             "d": ["共享单车堆成山", "电动车乱停一大片", "外卖电瓶车横七竖八",
                   "自行车倒了一地"], "cam": "非机动车乱停放"},
    "0204": {"say": ["{p}{d}", "{p}{d}，联系不上车主", "{p}{d}，交警来处理一下"],
             "d": ["有辆白色轿车违停好几天", "大货车停在路边过夜", "一辆黑色越野车堵住了出口",
                   "好几辆车双排停车"], "cam": "机动车违停"},
    "0301": {"say": ["{p}{d}，晚上很危险", "{p}的井盖{d}", "反映{p}井盖问题：{d}"],
             "d": ["井盖不见了只剩个洞", "井盖碎了一个角", "井盖翘起来了",
                   "井盖下沉车过去哐当响", "雨水井盖被偷了"], "cam": None},
    "0302": {"say": ["{p}{d}", "{p}的路灯{d}，晚上黑漆漆", "{p}{d}，走夜路害怕"],
             "d": ["路灯坏了好几盏", "路灯一直闪", "路灯杆被撞歪了", "路灯灯罩掉了电线外露"],
             "cam": None},
    "0401": {"say": ["{p}{d}", "{p}路面{d}，电动车容易摔", "{p}{d}，请尽快修补"],
             "d": ["有个大坑", "塌陷了一块", "地砖松动翘起", "裂开一条大缝"], "cam": None},
    "0402": {"say": ["{p}{d}", "{p}{d}，车都乱了", "{p}的信号灯{d}"],
             "d": ["红绿灯不亮了", "一直是红灯不变", "黄灯一直在闪", "行人信号灯坏了"],
             "cam": None},
    "0501": {"say": ["{p}的工地{d}，吵得睡不着", "{p}{d}，夜间施工扰民", "{p}工地{d}"],
             "d": ["半夜还在打桩", "凌晨两点在浇混凝土", "晚上十二点还在切割钢筋",
                   "夜里挖掘机一直在挖"], "cam": None},
    "0502": {"say": ["{p}{d}", "{p}{d}，路上全是泥", "{p}{d}，车开过去打滑"],
             "d": ["渣土车一路撒土", "渣土车掉了很多泥块", "运沙车沙子撒了一路",
                   "搅拌车漏混凝土"], "cam": "渣土车抛洒"},
    "0503": {"say": ["{p}的工地{d}", "{p}{d}，窗户都不敢开", "{p}工地{d}，空气很差"],
             "d": ["灰尘很大没有洒水", "裸土没盖防尘网", "拆房子粉尘满天飞"], "cam": "工地扬尘"},
    "0601": {"say": ["{p}{d}", "{p}的河道{d}，味道很大", "{p}{d}，请环保部门来查"],
             "d": ["河水发黑发臭", "河面漂着死鱼", "排污口在排白色泡沫水", "河里一层油花"],
             "cam": None},
    "0602": {"say": ["{p}{d}", "{p}{d}，油烟直排扰民", "{p}{d}，家里都是油烟味"],
             "d": ["烧烤店油烟往楼上飘", "饭店没装油烟净化器", "火锅店排风口对着窗户"],
             "cam": None},
    "0701": {"say": ["{p}{d}", "{p}{d}，车辆没法通行", "{p}{d}，请水务来排水"],
             "d": ["积水到膝盖", "下雨积水很深有车熄火", "地下车库进水了", "雨水口堵了积水不退"],
             "cam": "道路积水"},
    "0702": {"say": ["{p}{d}", "{p}{d}，水一直往外冒", "{p}{d}，到现在没修"],
             "d": ["自来水管爆了", "地下水管漏水路面渗水", "消防栓被撞坏喷水"], "cam": None},
    "0801": {"say": ["{p}{d}", "{p}{d}，不敢开火", "{p}{d}，请燃气公司马上来"],
             "d": ["闻到很浓的燃气味", "燃气管道在漏气", "有股煤气味"], "cam": None},
    "0802": {"say": ["{p}{d}", "{p}{d}，消防车进不来", "{p}{d}，一旦着火很危险"],
             "d": ["消防通道堆满杂物", "安全出口被锁住了", "楼道堆满纸箱旧家具"], "cam": None},
    "0901": {"say": ["{p}{d}", "{p}{d}，挡住了路", "{p}{d}，很危险"],
             "d": ["大树被风刮倒了", "树枝断了挂在半空", "枯树歪得快倒了"], "cam": None},
    "1201": {"say": ["{p}{d}", "{p}{d}，安全隐患很大", "举报{p}{d}"],
             "d": ["一套房子住了十几个人", "房东隔成好多小单间出租", "地下室隔成小间住人"],
             "cam": None},
    "1203": {"say": ["{p}{d}", "{p}{d}，吵得没法休息", "{p}{d}，噪音扰民"],
             "d": ["广场舞音响开得很大", "KTV唱到凌晨", "商铺大喇叭循环播放广告"],
             "cam": None},
}
PREFIX = {"hotline_12345": ["市民来电反映：", "来电人称，", ""],
          "police_110": ["110转来：", "110非警务警情转办：", ""],
          "citizen_app": ["", "", "随手拍："], "wechat": ["", "您好，", "投诉："],
          "grid_app": ["网格员上报：", "巡查发现，", ""], "camera_ai": [""], "system": [""]}
SUFFIX = ["", "。", "，请尽快处理。", "，谢谢！", "！"]
CHANNELS = ["hotline_12345", "hotline_12345", "citizen_app", "citizen_app", "wechat",
            "grid_app", "police_110"]


@dataclass(frozen=True)
class Incident:
    incident: str
    category: str
    place: dict[str, Any]
    spot: tuple[str, int, int]
    detail: str
    at_min: float
    kind: str  # base / sibling / neighbour


def _offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (lon + east_m / (111_320 * math.cos(math.radians(lat))), lat + north_m / 110_540)


def _reports(incident: Incident, rng: random.Random, count: int) -> list[dict[str, Any]]:
    spec = TEMPLATES[incident.category]
    base = _offset(incident.place["lon"], incident.place["lat"], incident.spot[1],
                   incident.spot[2])
    out = []
    camera_used = False
    for i in range(count):
        channel = rng.choice(CHANNELS)
        if spec["cam"] and not camera_used and rng.random() < 0.3:
            channel, camera_used = "camera_ai", True
        # The first report comes when it is seen; the others over the next hours (a few the
        # next day).
        at = incident.at_min + (0 if i == 0 else rng.choice(
            [rng.uniform(2, 90), rng.uniform(30, 360), rng.uniform(600, 1500)]))
        spot = incident.spot[0] if rng.random() > 0.2 else ""
        place = incident.place["name"] + spot
        row: dict[str, Any] = {"incident": incident.incident, "kind": incident.kind,
                               "category": incident.category, "channel": channel,
                               "at_min": round(at, 1)}
        if channel == "camera_ai":
            # A camera's model names its class: the channel sends the category with the text.
            row["text"] = (f"视频AI识别：疑似{spec['cam']}，置信度0.{rng.randint(70, 97)}，"
                           f"点位{incident.place['name']}{incident.spot[0]}摄像头")
            row["channel_category"] = incident.category
            lon, lat = _offset(*base, rng.uniform(-25, 25), rng.uniform(-25, 25))
            row |= {"lon": round(lon, 6), "lat": round(lat, 6)}
        else:
            text = rng.choice(spec["say"]).format(p=place, d=incident.detail)
            row["text"] = rng.choice(PREFIX[channel]) + text.strip("，") + rng.choice(SUFFIX)
            if channel in ("hotline_12345", "police_110") and rng.random() < 0.7:
                row["address"] = place  # a call gives a place, no coordinates
            else:
                lon, lat = _offset(*base, rng.gauss(0, 25), rng.gauss(0, 25))
                row |= {"lon": round(lon, 6), "lat": round(lat, 6)}
        out.append(row)
    return out


def generate(seed: int = 20261001, incidents: int = 120) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    places = [p for p in json.loads((DATA / "gazetteer.json").read_text(encoding="utf-8"))[
        "places"] if p["kind"] in ("community", "poi")]
    codes = sorted(TEMPLATES)
    made: list[Incident] = []
    sizes = [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 6]
    n = 0

    def new(category: str, place: dict[str, Any], spot: tuple[str, int, int], at: float,
            kind: str, avoid: str | None = None) -> Incident:
        nonlocal n
        n += 1
        details = [d for d in TEMPLATES[category]["d"] if d != avoid]
        return Incident(f"I{n:03d}", category, place, spot, rng.choice(details), at, kind)

    while len(made) < incidents:
        category = rng.choice(codes)
        place = rng.choice(places)
        spot = rng.choice(SPOTS)
        at = rng.uniform(0, 7 * 1440 - 1500)
        base = new(category, place, spot, at, "base")
        made.append(base)
        roll = rng.random()
        if roll < 0.35:  # sibling: same category, same place, another spot, same day
            other = rng.choice([s for s in SPOTS if s != spot])
            made.append(new(category, place, other, at + rng.uniform(-240, 240), "sibling",
                            avoid=base.detail))
        elif roll < 0.55:  # neighbour: same place and spot and time, another category
            others = [c for c in codes if c != category]
            made.append(new(rng.choice(others), place, spot, at + rng.uniform(-60, 60),
                            "neighbour"))
    rows = []
    for incident in made:
        rows += _reports(incident, rng, rng.choice(sizes))
    rows.sort(key=lambda r: r["at_min"])
    return rows


# -- figures -------------------------------------------------------------------------------


def pairwise(gold: Sequence[str], predicted: Sequence[Any]) -> dict[str, float]:
    """Precision, recall and F1 over all pairs of items (same cluster or not)."""
    def pairs(labels: Sequence[Any]) -> set[tuple[int, int]]:
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            groups[label].append(i)
        return {(a, b) for g in groups.values() for i, a in enumerate(g) for b in g[i + 1:]}

    true, found = pairs(gold), pairs(predicted)
    hit = len(true & found)
    precision = hit / len(found) if found else 1.0
    recall = hit / len(true) if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def bcubed(gold: Sequence[str], predicted: Sequence[Any]) -> dict[str, float]:
    by_gold: dict[Any, set[int]] = defaultdict(set)
    by_pred: dict[Any, set[int]] = defaultdict(set)
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        by_gold[g].add(i)
        by_pred[p].add(i)
    precision = recall = 0.0
    for g, p in zip(gold, predicted, strict=True):
        both = len(by_gold[g] & by_pred[p])
        precision += both / len(by_pred[p])
        recall += both / len(by_gold[g])
    precision, recall = precision / len(gold), recall / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def load(path: Path = EVAL_FILE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# -- fitting and scoring in memory -----------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    row: dict[str, Any]
    sighting: Sighting | None  # None: no point precise enough to merge on
    category: str | None  # the confident category, as intake would set it
    group: str | None


def prepare(rows: Sequence[dict[str, Any]], base: datetime) -> list[Prepared]:
    """Locate and classify each report as intake does."""
    settings = load_settings("events")
    options = EventsSettings.from_env()
    city = City(settings.city_dir)
    gazetteer = options.gazetteer_path(settings.city_dir)
    locator = Locator.load(city.divisions, gazetteer)
    places = [p["name"] for p in json.loads(gazetteer.read_text(encoding="utf-8"))["places"]]
    classifier = for_city(city, places, options)
    groups = {c["code"]: c["group"] for c in city.categories}
    global PLACES
    PLACES = places
    out = []
    for row in rows:
        location = locator.resolve(row.get("lon"), row.get("lat"), row.get("address"),
                                   row["text"])
        found = classifier.classify(row["text"])
        if row.get("channel_category"):
            found = Classification(row["channel_category"], 1.0, "channel")
        category = found.category if found.confidence >= options.classify_threshold else None
        sighting = None
        if location.lon is not None and location.lat is not None and \
                (location.precision_m or 0) <= MERGEABLE_PRECISION_M:
            sighting = Sighting(row["text"], location.lon, location.lat,
                                location.precision_m or 0.0,
                                base + timedelta(minutes=row["at_min"]), row["channel"], category,
                                probabilities(found))
        out.append(Prepared(row, sighting, category, groups.get(category or "")))
    return out


def training_pairs(prepared: Sequence[Prepared], merger: Merger) -> tuple[list[list[float]],
                                                                           list[int]]:
    """Features and labels of every pair of reports the merger would compare."""
    xs, ys = [], []
    for i, a in enumerate(prepared):
        for b in prepared[:i]:
            if a.sighting is None or b.sighting is None:
                continue
            candidate = Candidate(0, b.category, (b.group,) if b.group else (), None,
                                  (b.sighting,))
            for x in merger.pairs(a.sighting, a.category, a.group, candidate):
                xs.append(x)
                ys.append(int(a.row["incident"] == b.row["incident"]))
    return xs, ys


def fit(prepared: Sequence[Prepared]) -> PairModel:
    from sklearn.linear_model import LogisticRegression

    merger = Merger(EventsSettings.from_env(), PairModel((0.0,) * len(FEATURES), 0.0), PLACES)
    xs, ys = training_pairs(prepared, merger)
    model = LogisticRegression(C=1.0, max_iter=5000).fit(xs, ys)
    return PairModel(tuple(round(float(w), 4) for w in model.coef_[0]),
                     round(float(model.intercept_[0]), 4))


def simulate(prepared: Sequence[Prepared], merger: Merger) -> list[int]:
    """The case each report ends in, merging in reported-time order as the service does."""
    cases: list[tuple[str | None, list[Sighting]]] = []
    groups: dict[int, tuple[str, ...]] = {}
    assigned = []
    for p in sorted(prepared, key=lambda p: p.row["at_min"]):
        target = None
        if p.sighting is not None:
            at = p.sighting.reported_at
            candidates = [Candidate(i, category, groups[i], None, tuple(sorted(
                seen, key=lambda s: abs(s.reported_at - at))[:10]))
                for i, (category, seen) in enumerate(cases) if seen]
            found = merger.choose(p.sighting, p.category, p.group, candidates)
            target = found[0] if found else None
        if target is None:
            cases.append((p.category, []))
            target = len(cases) - 1
            groups[target] = (p.group,) if p.group else ()
        category, seen = cases[target]
        if category is None and p.category is not None:
            cases[target] = (p.category, seen)
            groups[target] = (p.group,) if p.group else ()
        if p.sighting is not None:
            seen.append(p.sighting)
        assigned.append((p.row, target))
    order = {id(row): i for i, row in enumerate(p.row for p in prepared)}
    return [t for _, t in sorted(assigned, key=lambda a: order[id(a[0])])]


FIT_SEED = 777
PLACES: list[str] = []
BASE = datetime(2026, 10, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description="the merge evaluation set and model")
    parser.add_argument("command", choices=["generate", "fit", "score"])
    parser.add_argument("file", nargs="?", type=Path, default=EVAL_FILE)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--incidents", type=int, default=120)
    args = parser.parse_args()
    if args.command == "generate":
        rows = generate(args.seed or 20261001, args.incidents)
        args.file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                             encoding="utf-8")
        print(f"{len(rows)} reports of {len({r['incident'] for r in rows})} incidents -> "
              f"{args.file}")
    elif args.command == "fit":
        model = fit(prepare(generate(args.seed or FIT_SEED, 150), BASE))
        MODEL_FILE.write_text(json.dumps({
            "note": f"merge.py's pair model, fitted by `evaluation fit` on a set of seed "
                    f"{args.seed or FIT_SEED} (not the evaluation set)",
            "features": list(FEATURES), "weights": list(model.weights),
            "intercept": model.intercept}, indent=1) + "\n", encoding="utf-8")
        print(dict(zip(FEATURES, model.weights, strict=True)), model.intercept)
    else:
        prepared = prepare(load(args.file), BASE)
        predicted = simulate(prepared, Merger(EventsSettings.from_env(), places=PLACES))
        gold = [p.row["incident"] for p in prepared]
        print(json.dumps({"reports": len(gold), "pairwise": pairwise(gold, predicted),
                          "bcubed": bcubed(gold, predicted)}))


if __name__ == "__main__":
    main()
