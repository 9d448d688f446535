"""Is a new report the same incident as an existing case? Text, place, time and category.

A candidate case qualifies only when it is near (within the radius, after allowing for the
imprecision of gazetteer points), within the time window of one of its reports by *reported*
time, of the same or a compatible category, and not closed longer ago than the configured
window. For each qualifying candidate a logistic model gives the probability that the report
and the candidate's closest matching report are one incident, from a few features a person
would weigh: how much of the text they share (character bigrams, the channel's boilerplate
removed; place names stay, they are what two reports of one incident share), how far apart
they are and how long, whether their categories agree, whether one of them is a camera's
formulaic text or a hotline address only placed by the gazetteer. The weights live in
`data/merge_model.json`, fitted on a labelled set of their own (`python -m
cityos_events.evaluation fit`); a city refits them on its own operators' merges and splits.
The best candidate takes the report if its probability reaches the threshold. Only reported
times are used, never arrival times, so a backfill of history gives the cases a live run would.
"""

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cityos_contracts.cases import Classification
from cityos_events.classify import BOILERPLATE, normalise
from cityos_events.config import DATA, EventsSettings

MODEL_FILE = DATA / "merge_model.json"

# Categories one incident is often filed under by different channels (a classifier, a caller
# and a camera may each see it differently). Same group counts as compatible too.
COMPATIBLE: Final[list[frozenset[str]]] = [
    frozenset({"0101", "0102", "0502"}),          # garbage, road debris, muck spill
    frozenset({"0204", "0802", "0203"}),          # parked vehicles blocking a lane
    frozenset({"0501", "1203", "0603", "1202"}),  # noise, whoever makes it
    frozenset({"0503", "0502"}),                  # site dust and muck trucks
    frozenset({"0701", "0702", "0301"}),          # water on the road, manholes
    frozenset({"0801", "0803"}),                  # gas and hazardous chemicals
    frozenset({"0601", "0603"}),                  # pollution of water and air
    frozenset({"0901", "0902"}),                  # trees and green space
    frozenset({"1101", "1301"}),                  # people falling ill
]
_BOILERPLATE = re.compile("|".join(re.escape(normalise(b)) for b in BOILERPLATE))
_PUNCT = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Sighting:
    """One report as the merger sees it."""

    text: str
    lon: float
    lat: float
    precision_m: float
    reported_at: datetime
    channel: str = ""
    category: str | None = None  # its own confident category, if any
    probs: tuple[tuple[str, float], ...] = ()  # the classifier's likeliest categories


def probabilities(classification: Classification) -> tuple[tuple[str, float], ...]:
    """A classification as the merger weighs it: the categories it finds likely."""
    if classification.method in ("channel", "operator") and classification.category:
        return ((classification.category, 1.0),)
    found = {a.category: a.probability for a in classification.alternatives}
    if classification.category and classification.category not in found:
        found[classification.category] = classification.confidence
    return tuple(found.items())


def agreement(a: Sequence[tuple[str, float]], b: Sequence[tuple[str, float]]) -> float:
    """How much two category distributions overlap (histogram intersection, 0..1)."""
    other = dict(b)
    return sum(min(p, other.get(c, 0.0)) for c, p in a)


@dataclass(frozen=True)
class Candidate:
    case_id: int
    category: str | None
    groups: tuple[str, ...]  # the category's group, for compatibility
    closed_at: datetime | None
    sightings: tuple[Sighting, ...]


def bigrams(text: str) -> frozenset[str]:
    cleaned = _PUNCT.sub("", _BOILERPLATE.sub("", normalise(text)))
    if len(cleaned) < 2:
        return frozenset({cleaned}) if cleaned else frozenset()
    return frozenset(cleaned[i:i + 2] for i in range(len(cleaned) - 1))


@dataclass(frozen=True)
class Words:
    """A report's text as the model compares it: all its bigrams, the bigrams left once the
    gazetteer's place names are taken out (what was seen, and where exactly at the place),
    and the place names it mentions."""

    all: frozenset[str]
    rest: frozenset[str]
    places: frozenset[str]


class TextViews:
    def __init__(self, places: Iterable[str]) -> None:
        names = sorted({normalise(p) for p in places if p}, key=len, reverse=True)
        self._places = re.compile("|".join(re.escape(n) for n in names)) if names else None

    @functools.lru_cache(maxsize=20_000)  # noqa: B019 - one per process, texts repeat
    def __call__(self, text: str) -> Words:
        if self._places is None:
            return Words(bigrams(text), bigrams(text), frozenset())
        normal = normalise(text)
        return Words(bigrams(normal), bigrams(self._places.sub("|", normal)),
                     frozenset(self._places.findall(normal)))


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def compatible(a: str | None, b: str | None, group_a: str | None, group_b: str | None) -> bool:
    if a is None or b is None or a == b:
        return True
    if group_a is not None and group_a == group_b:
        return True
    return any(a in pair and b in pair for pair in COMPATIBLE)


FEATURES: Final = ("dice", "containment", "dice_rest", "same_place", "other_place", "near",
                   "far_km", "gap_days", "same_category", "compatible_category",
                   "unknown_category", "agreement", "imprecise", "camera", "camera_near",
                   "dice_near")


def features(report: Sighting, words: Words, seen: Sighting, seen_words: Words,
             far_m: float, gap: timedelta, category: str | None,
             case_category: str | None) -> list[float]:
    """The model's inputs for one pair of reports (the candidate's category stands for the
    earlier report's when it has none of its own)."""
    a, b = words.all, seen_words.all
    dice = _dice(a, b)
    containment = len(a & b) / min(len(a), len(b)) if a and b else 0.0
    same_place = float(bool(words.places & seen_words.places))
    other_place = float(bool(words.places) and bool(seen_words.places) and not same_place)
    near = math.exp(-far_m / 100)
    other = seen.category or case_category
    same = float(category is not None and category == other)
    unknown = float(category is None or other is None)
    camera = float("camera_ai" in (report.channel, seen.channel))
    return [dice, containment, _dice(words.rest, seen_words.rest), same_place, other_place,
            near, far_m / 1000, gap.total_seconds() / 86400, same, 1.0 - same - unknown,
            unknown, agreement(report.probs, seen.probs),
            float(report.precision_m + seen.precision_m > 0), camera, camera * near,
            dice * near]


@dataclass(frozen=True)
class PairModel:
    """Logistic weights over FEATURES (and an intercept)."""

    weights: tuple[float, ...]
    intercept: float

    @classmethod
    def load(cls, path: Path) -> "PairModel":
        data = json.loads(path.read_text(encoding="utf-8"))
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"{path} was fitted on other features: refit it")
        return cls(tuple(float(w) for w in data["weights"]), float(data["intercept"]))

    def probability(self, x: Sequence[float]) -> float:
        z = self.intercept + sum(w * v for w, v in zip(self.weights, x, strict=True))
        return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))


class Merger:
    def __init__(self, settings: EventsSettings, model: PairModel | None = None,
                 places: Iterable[str] = ()) -> None:
        self.words = TextViews(places)
        self.radius = settings.merge_radius_m
        self.window = timedelta(hours=settings.merge_window_h)
        self.closed_window = timedelta(hours=settings.closed_merge_window_h)
        self.threshold = settings.merge_threshold
        self.model = model or PairModel.load(MODEL_FILE)

    def pairs(self, report: Sighting, category: str | None, group: str | None,
              candidate: Candidate) -> list[list[float]]:
        """Features of the report against each of the candidate's reports it could be one
        incident with (none when the candidate cannot be)."""
        if candidate.closed_at is not None and \
                report.reported_at > candidate.closed_at + self.closed_window:
            return []
        case_group = candidate.groups[0] if candidate.groups else None
        if not compatible(category, candidate.category, group, case_group):
            return []
        words = self.words(report.text)
        found = []
        for seen in candidate.sightings:
            gap = abs(report.reported_at - seen.reported_at)
            if gap > self.window:
                continue
            slack = report.precision_m + seen.precision_m
            far = max(0.0, distance_m(report.lon, report.lat, seen.lon, seen.lat) - slack)
            if far > self.radius:
                continue
            found.append(features(report, words, seen, self.words(seen.text), far, gap,
                                  category, candidate.category))
        return found

    def score(self, report: Sighting, category: str | None, group: str | None,
              candidate: Candidate) -> float | None:
        """The probability that the report is the candidate's incident (its best-matching
        report decides), or None when it cannot be."""
        pairs = self.pairs(report, category, group, candidate)
        return max((self.model.probability(x) for x in pairs), default=None)

    def choose(self, report: Sighting, category: str | None, group: str | None,
               candidates: list[Candidate]) -> tuple[int, float] | None:
        """(case id, probability) of the case the report belongs to, or None for a new case."""
        scored = [(s, c.case_id) for c in candidates
                  if (s := self.score(report, category, group, c)) is not None]
        if not scored:
            return None
        best, case_id = max(scored)
        return (case_id, best) if best >= self.threshold else None
