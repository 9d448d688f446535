"""CityOS contracts: every NATS message and public HTTP payload as a versioned msgspec Struct.

JSON Schema and the AsyncAPI document are generated from these Structs (`cityos-contracts export`).
"""

from cityos_contracts.datasets import (
    BatchResult,
    ContributionMetrics,
    DatasetKind,
    DatasetRegistration,
    DatasetVersion,
    DeadLetter,
    FieldMapping,
    FieldSpec,
)
from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch, RawRecordBatch

__all__ = [
    "BatchResult",
    "ContributionMetrics",
    "DatasetKind",
    "DatasetRegistration",
    "DatasetVersion",
    "DeadLetter",
    "EntityBatch",
    "FieldMapping",
    "FieldSpec",
    "MediaBatch",
    "ObservationBatch",
    "RawRecordBatch",
]
