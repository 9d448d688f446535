"""Columnar GPS fixes and their wire forms (NDJSON, CSV, JSON) for the ingestion API."""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import msgspec
import numpy as np

# Asia/Shanghai has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact
# and lets numpy format millions of timestamps at once.
SHANGHAI_OFFSET_S = 8 * 3600
NOISE_DUPLICATE, NOISE_LATE, NOISE_OUTLIER = 1, 2, 4
COLUMNS = ("plate", "ts", "lon", "lat", "speed_kmh", "heading")

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Fixes:
    """Parallel arrays, one row per fix; `noise` marks rows a noise option produced or altered."""

    plate: np.ndarray  # str
    ts: np.ndarray  # float64 epoch seconds
    lon: np.ndarray
    lat: np.ndarray
    speed_kmh: np.ndarray
    heading: np.ndarray
    noise: np.ndarray  # uint8 bit set of NOISE_*

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: Any) -> "Fixes":
        """Rows by slice (a view), index array or mask, keeping the columns together."""
        return Fixes(*(getattr(self, f.name)[index] for f in fields(self)))


def iter_batches(fixes: Fixes, size: int) -> Iterator[Fixes]:
    for lo in range(0, len(fixes), size):
        yield fixes.take(slice(lo, lo + size))


def iso_times(ts: np.ndarray) -> list[str]:
    """ISO 8601 with the +08:00 offset, millisecond precision, e.g. 2025-05-01T08:00:00.250+08:00."""
    ms = np.round(np.asarray(ts, dtype=np.float64) * 1000).astype(np.int64)
    local = (ms + SHANGHAI_OFFSET_S * 1000).astype("datetime64[ms]")
    return [s + "+08:00" for s in np.datetime_as_string(local, unit="ms").tolist()]


def _columns(fixes: Fixes) -> tuple[list[Any], ...]:
    return (
        fixes.plate.tolist(),
        iso_times(fixes.ts),
        np.round(fixes.lon, 6).tolist(),
        np.round(fixes.lat, 6).tolist(),
        np.round(fixes.speed_kmh, 1).tolist(),
        np.round(fixes.heading, 1).tolist(),
    )


def records(fixes: Fixes) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, row, strict=True)) for row in zip(*_columns(fixes), strict=True)]


def to_ndjson(fixes: Fixes) -> bytes:
    return _encoder.encode_lines(records(fixes))


def to_json(fixes: Fixes) -> bytes:
    return _encoder.encode(records(fixes))


def to_csv(fixes: Fixes, encoding: str = "utf-8") -> bytes:
    """CSV with a header row; pass encoding="gbk" for the exports many bureaus still produce."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(zip(*_columns(fixes), strict=True))
    return out.getvalue().encode(encoding)
