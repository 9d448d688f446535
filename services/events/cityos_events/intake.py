"""One door in: check a report, locate it, classify it, and store it into a case.

The same path serves POST /reports, the NATS intake subject and Open311. Everything a report
can be refused for is checked before anything is stored; after that the report is never lost
(a duplicate idempotency key answers the first receipt instead).
"""

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from cityos_contracts.cases import Classification, ReportIn, ReportReceipt
from cityos_events.classify import Classifier, normalise
from cityos_events.config import EventsSettings
from cityos_events.location import Locator, OutsideCity
from cityos_events.merge import Candidate, Merger, Sighting
from cityos_events.publisher import EventPublisher
from cityos_events.store import MERGEABLE_PRECISION_M, CaseStore, CategoryInfo, NewReport

_NOT_TEXT = re.compile(r"[\W_]+")


class Rejected(ValueError):
    """The report cannot be taken in as it is (422, or a dead letter on NATS)."""


class KeyReused(ValueError):
    """The idempotency key was used before for a different report (409)."""


def category_infos(categories: list[dict[str, Any]]) -> dict[str, CategoryInfo]:
    return {c["code"]: CategoryInfo(
        code=c["code"], name=c["name"], group=c["group"], department=c["department"],
        handling_level=c["handling_level"], priority=c["priority"],
        accept_within_minutes=int(c["accept_within_minutes"]),
        dispose_within_hours=int(c["dispose_within_hours"])) for c in categories}


def search_terms(text: str) -> list[str]:
    """The character bigrams a report is found by (a lone character stands for itself)."""
    cleaned = _NOT_TEXT.sub("", normalise(text))
    if len(cleaned) < 2:
        return [cleaned] if cleaned else []
    return sorted({cleaned[i:i + 2] for i in range(len(cleaned) - 1)})


def payload_hash(report: ReportIn) -> str:
    """What makes two posts the same report (the idempotency key aside)."""
    body = msgspec.json.encode(msgspec.structs.replace(report, idempotency_key=None))
    return hashlib.sha256(body).hexdigest()


class Intake:
    def __init__(self, store: CaseStore, classifier: Classifier, locator: Locator,
                 publisher: EventPublisher, categories: dict[str, CategoryInfo],
                 settings: EventsSettings, merger: Merger) -> None:
        self.store = store
        self.classifier = classifier
        self.locator = locator
        self.publisher = publisher
        self.categories = categories
        self.settings = settings
        self.merger = merger
        # Far enough to reach any sighting the merger could accept (gazetteer slack included).
        self.search_radius_m = settings.merge_radius_m + 2 * MERGEABLE_PRECISION_M

    def check(self, report: ReportIn) -> None:
        text = report.text.strip()
        if not text:
            raise Rejected("text is empty")
        if len(text) > self.settings.max_text_chars:
            raise Rejected(f"text has {len(text)} characters; at most "
                           f"{self.settings.max_text_chars} are taken")
        if report.reported_at.tzinfo is None:
            raise Rejected("reported_at needs a time zone, e.g. 2026-11-21T08:00:00+08:00")
        if report.reported_at > datetime.now(UTC) + timedelta(
                seconds=self.settings.future_tolerance_s):
            raise Rejected("reported_at is in the future")
        if (report.lon is None) != (report.lat is None):
            raise Rejected("give both lon and lat, or neither")
        if report.lon is None and not (report.address or "").strip():
            raise Rejected("a report needs lon/lat or an address")
        if report.category is not None and report.category not in self.categories:
            raise Rejected(f"unknown category {report.category!r}; see GET /categories")

    def classify(self, report: ReportIn) -> tuple[Classification, bool]:
        """The classification and whether it is confident enough to set the case's category."""
        if report.category is not None:
            return Classification(category=report.category, confidence=1.0,
                                  method="channel"), True
        found = self.classifier.classify(report.text)
        return found, found.category is not None and \
            found.confidence >= self.settings.classify_threshold

    async def take(self, report: ReportIn) -> tuple[ReportReceipt, bool]:
        """(receipt, created): a report sent again under its idempotency key is answered with
        the first receipt and created=False."""
        self.check(report)
        digest = payload_hash(report)
        key = report.idempotency_key
        if key is not None:
            seen = await self._seen(report.channel, key, digest)
            if seen is not None:
                return seen, False
        try:
            location = self.locator.resolve(report.lon, report.lat, report.address,
                                            report.text)
        except OutsideCity as exc:
            raise Rejected(str(exc)) from exc
        classification, confident = self.classify(report)
        new = NewReport(
            channel=report.channel, text=report.text.strip(), reported_at=report.reported_at,
            location=location, classification=classification, confident=confident,
            media=list(report.media), category_hint=report.category,
            source_ref=report.source_ref, idempotency_key=key, payload_hash=digest,
            contact=report.reporter, bigrams=search_terms(report.text))
        try:
            result = await self.store.take_in(
                new, self.search_radius_m, self.merger.window, self.merger.closed_window,
                self.settings.classify_threshold,
                self._chooser(classification.category if confident else None))
        except asyncpg.UniqueViolationError:
            # The same key raced in from another request: answer as the winner was answered.
            assert key is not None
            seen = await self._seen(report.channel, key, digest)
            if seen is None:
                raise
            return seen, False
        self.publisher.publish_soon(result.events)
        receipt = ReportReceipt(
            report_id=result.report_id, case_id=result.case_id, status=result.status,  # type: ignore[arg-type]
            merged=result.merged, duplicate=False, classification=classification,
            location=location)
        return receipt, True

    def _chooser(self, category: str | None) -> Any:
        group = self.categories[category].group if category in self.categories else None

        def choose(sighting: Sighting, candidates: list[Candidate]) -> int | None:
            found = self.merger.choose(sighting, category, group, candidates)
            return None if found is None else found[0]

        return choose

    async def _seen(self, channel: str, key: str, digest: str) -> ReportReceipt | None:
        found = await self.store.by_key(channel, key)
        if found is None:
            return None
        report_id, first_digest = found
        if first_digest != digest:
            raise KeyReused(f"idempotency key {key!r} was used for a different report")
        report = await self.store.report(report_id)
        case = await self.store.case(report.case_id) if report else None
        assert report is not None and case is not None
        return ReportReceipt(report_id=report_id, case_id=report.case_id, status=case.status,
                             merged=case.report_count > 1, duplicate=True,
                             classification=report.classification, location=report.location)
