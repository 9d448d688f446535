"""The review's stream handlers: case events, dispatch events and contribution metrics, in
batches (one transaction per batch). While a rebuild swaps its tables in, they wait."""

import asyncio

from cityos_contracts.cases import CaseEvent
from cityos_contracts.datasets import ContributionMetrics
from cityos_contracts.dispatch import DispatchEvent
from cityos_contracts.subjects import CASE_EVENTS, CONTRIBUTION, DISPATCH_EVENTS
from cityos_kit.bus import Bus, Delivery
from cityos_review.rebuild import stream_of
from cityos_review.store import ReviewStore, case_row, dispatch_row


def start_consumers(bus: Bus, store: ReviewStore, writing: asyncio.Lock) -> None:
    async def on_case_events(deliveries: list[Delivery[CaseEvent]]) -> None:
        async with writing:
            await store.take_in([case_row(d.message, d.msg.data) for d in deliveries])

    async def on_dispatch_events(deliveries: list[Delivery[DispatchEvent]]) -> None:
        async with writing:
            await store.take_in([dispatch_row(d.message, d.msg.data) for d in deliveries])

    async def on_contribution(deliveries: list[Delivery[ContributionMetrics]]) -> None:
        await store.add_contribution([d.message for d in deliveries])

    bus.consume_batches(stream_of(CASE_EVENTS), "review-cases", CaseEvent, on_case_events,
                        filter_subject=CASE_EVENTS.wildcard(), batch=256)
    bus.consume_batches(stream_of(DISPATCH_EVENTS), "review-dispatch", DispatchEvent,
                        on_dispatch_events, filter_subject=DISPATCH_EVENTS.wildcard(), batch=256)
    bus.consume_batches(stream_of(CONTRIBUTION), "review-contribution", ContributionMetrics,
                        on_contribution, filter_subject=CONTRIBUTION.wildcard(), batch=64)
