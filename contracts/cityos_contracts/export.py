"""Export JSON Schema for every contract and an AsyncAPI document for the NATS subjects.

    cityos-contracts export [DIR]   write the files (default: contracts/schema)
    cityos-contracts check [DIR]    exit 1 if the files on disk are stale
"""

import sys
from pathlib import Path
from typing import Any

import msgspec

from cityos_contracts import (
    cases,
    datasets,
    dispatch,
    hazchem,
    identity,
    records,
    review,
    stquery,
)
from cityos_contracts.subjects import REQUEST_SUBJECTS, STREAMS, RequestSubject

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "schema"

PUBLIC_PAYLOADS: tuple[type[msgspec.Struct], ...] = (
    datasets.DatasetRegistration,
    datasets.DatasetVersion,
    datasets.BatchResult,
    datasets.DeadLetter,
    datasets.ContributionMetrics,
    records.RawRecordBatch,
    records.ObservationBatch,
    records.EntityBatch,
    records.MediaBatch,
    identity.Principal,
    identity.TokenRequest,
    identity.TokenResponse,
    identity.TokenRevocation,
    identity.OAuthError,
    identity.ClientRegistration,
    identity.ClientCredentials,
    identity.SecretRotation,
    identity.ClientInfo,
    identity.UserRegistration,
    identity.UserCreated,
    identity.PasswordChange,
    identity.PersonInfo,
    identity.Revocation,
    identity.AuditEvent,
    identity.AuditPage,
    cases.ReportIn,
    cases.ReportReceipt,
    cases.Report,
    cases.Classification,
    cases.Location,
    cases.Case,
    cases.CaseEvent,
    cases.CaseDetail,
    cases.CasePage,
    cases.CaseAction,
    cases.ContactView,
    cases.Open311Service,
    cases.Open311ServiceDefinition,
    cases.Open311Created,
    cases.Open311Request,
    cases.Open311Error,
    stquery.RangeQuery,
    stquery.ObservationPage,
    stquery.CellCountQuery,
    stquery.CellCounts,
    stquery.NearestQuery,
    stquery.NearestResult,
    stquery.Trajectory,
    stquery.StayPointQuery,
    stquery.StayPoints,
    stquery.MatchQuery,
    stquery.DeviationQuery,
    stquery.Deviations,
    stquery.ReachableQuery,
    stquery.ReachableArea,
    stquery.BoxQuery,
    stquery.BoxSelection,
    stquery.QueryError,
    dispatch.RuleIn,
    dispatch.Rule,
    dispatch.RouteDecision,
    dispatch.PreviewCase,
    dispatch.RulePreviewIn,
    dispatch.RulePreview,
    dispatch.Assignment,
    dispatch.UnitAction,
    dispatch.ExtensionDecision,
    dispatch.DispatchEvent,
    dispatch.Escalation,
    dispatch.DutyChange,
    dispatch.PositionReport,
    dispatch.PositionBatch,
    dispatch.StaffMember,
    dispatch.AssignStaff,
    dispatch.Task,
    dispatch.StreetReport,
    dispatch.StreetReportReceipt,
    dispatch.Feedback,
    dispatch.Rating,
    dispatch.RatingReceipt,
    dispatch.FeedbackRecord,
    dispatch.EmergencyIn,
    dispatch.Emergency,
    dispatch.EmergencyResources,
    dispatch.EmergencyTask,
    review.UnitFigures,
    review.Contribution,
    review.RankingWeights,
    review.Ranking,
    review.RoundFacts,
    review.RoundPage,
    review.CaseTimeline,
    review.RebuildStatus,
    hazchem.RiskComputeRequest,
    hazchem.RiskMap,
    hazchem.RiskRun,
)


def json_schemas(ref_template: str) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(PUBLIC_PAYLOADS, ref_template=ref_template)
    return components


def asyncapi(components: dict[str, Any]) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for stream in STREAMS:
        for subject in stream.subjects:
            name = subject.message.__name__
            messages[name] = {
                "name": name,
                "contentType": "application/json",
                "payload": {"$ref": f"#/components/schemas/{name}"},
                "headers": {
                    "type": "object",
                    "properties": {
                        "Nats-Msg-Id": {"type": "string", "description": "dedupe key"},
                        "traceparent": {"type": "string", "description": "W3C trace context"},
                    },
                },
            }
            key = subject.pattern.replace(".", "_").replace("<", "").replace(">", "")
            params = {
                p[1:-1]: {"description": p[1:-1]}
                for p in subject.pattern.split(".") if p.startswith("<")
            }
            channels[key] = {
                "address": "{prefix}." + subject.pattern.replace("<", "{").replace(">", "}"),
                "description": f"{subject.description} Stream {stream.name}.",
                "parameters": {"prefix": {"description": "deployment namespace"}, **params},
                "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            }
            operations[f"publish_{key}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{key}"},
                "summary": "Published by " + ", ".join(subject.publishers),
            }
            if subject.subscribers:
                operations[f"consume_{key}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{key}"},
                    "summary": "Consumed by " + ", ".join(subject.subscribers),
                }
    for request_subject in REQUEST_SUBJECTS:
        _request_reply(request_subject, channels, operations, messages)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "CityOS NATS subjects", "version": "1"},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }


def _request_reply(subject: RequestSubject, channels: dict[str, Any],
                   operations: dict[str, Any], messages: dict[str, Any]) -> None:
    """A core-NATS request/reply subject: the request channel and the requester's inbox."""
    names = [t.__name__ for t in (subject.request, subject.reply, subject.error)]
    for name in names:
        messages[name] = {"name": name, "contentType": "application/json",
                          "payload": {"$ref": f"#/components/schemas/{name}"}}
    key = subject.pattern.replace(".", "_")
    channels[key] = {
        "address": "{prefix}." + subject.pattern,
        "description": f"{subject.description} Request/reply, no stream.",
        "parameters": {"prefix": {"description": "deployment namespace"}},
        "messages": {names[0]: {"$ref": f"#/components/messages/{names[0]}"}},
    }
    channels[f"{key}_reply"] = {
        "address": None,
        "description": f"The requester's inbox for replies to {subject.pattern}.",
        "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names[1:]},
    }
    operations[f"answer_{key}"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{key}"},
        "summary": "Answered by " + ", ".join(subject.responders) + " (queue group)",
        "reply": {"channel": {"$ref": f"#/channels/{key}_reply"}},
    }


def fmt(document: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


def render() -> dict[str, bytes]:
    return {
        "json-schema.json": fmt({"$defs": json_schemas("#/$defs/{name}")}),
        "asyncapi.json": fmt(asyncapi(json_schemas("#/components/schemas/{name}"))),
    }


def stale_files(directory: Path = DEFAULT_DIR) -> list[str]:
    return [
        name for name, content in render().items()
        if not (directory / name).exists() or (directory / name).read_bytes() != content
    ]


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "export"
    directory = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_DIR
    if command == "check":
        stale = stale_files(directory)
        if stale:
            sys.exit(f"stale contract exports: {', '.join(stale)}; run `cityos-contracts export`")
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in render().items():
        (directory / name).write_bytes(content)
    print(f"wrote {', '.join(render())} to {directory}")


if __name__ == "__main__":
    main()
