"""The NATS door: reports a channel's system (or another service) publishes on
`reports.<channel>`, taken in exactly like POST /reports."""

from nats.aio.msg import Msg

from cityos_contracts.cases import ReportIn
from cityos_contracts.subjects import REPORTS, STREAMS
from cityos_events.intake import Intake, KeyReused, Rejected
from cityos_kit.bus import Bus, PermanentError
from cityos_kit.telemetry import logger

log = logger("cityos.events.consumers")
_STREAM = next(s for s in STREAMS if REPORTS in s.subjects)


def start_consumers(bus: Bus, intake: Intake) -> None:
    async def on_report(report: ReportIn, msg: Msg) -> None:
        channel = bus.relative(msg.subject).rsplit(".", 1)[-1]
        if channel != report.channel:
            raise PermanentError(f"report of channel {report.channel} on subject of {channel}")
        if report.idempotency_key is None:
            # Redelivery must not make a second report: the message id (or its stream position)
            # is the key when the channel gave none.
            key = (msg.headers or {}).get("Nats-Msg-Id") or (
                f"nats:{msg.metadata.sequence.stream}" if msg.metadata else None)
            report = ReportIn(**{f: getattr(report, f) for f in report.__struct_fields__
                                 if f != "idempotency_key"}, idempotency_key=key)
        try:
            receipt, created = await intake.take(report)
        except (Rejected, KeyReused) as exc:
            raise PermanentError(str(exc)) from exc
        log.info("report_taken_in", channel=channel, report_id=receipt.report_id,
                 case_id=receipt.case_id, created=created)

    bus.consume(_STREAM, "events-intake", ReportIn, on_report, filter_subject=REPORTS.wildcard())
