"""Turn a pushed body (JSON, NDJSON, CSV, GeoJSON; UTF-8 or GBK) into rows.

A body that cannot be read at all is the caller's error (`BodyError`, answered 4xx). A single
bad line of NDJSON is a bad record: it is returned as a `RowError` so it reaches the dead-letter
store with its reason while the rest of the batch goes on.
"""

import csv
import io
from dataclasses import dataclass
from typing import Any

import msgspec

FORMATS = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/csv": "csv",
    "application/geo+json": "geojson",
}
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}


class BodyError(ValueError):
    """The whole body is unusable; the message says why."""


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str
    raw: str


@dataclass(frozen=True)
class ParsedBody:
    rows: list[dict[str, Any]]
    row_numbers: list[int]  # 1-based position of each row in the body
    errors: list[RowError]
    columns: list[str] | None = None  # the CSV header, checked against the schema


def json_array(body: bytes, content_type: str) -> bytes | None:
    """The body as one UTF-8 JSON array of records, if it is JSON or NDJSON (fast path)."""
    fmt, charset = content_format(content_type)
    if charset not in (None, "utf-8", "utf8"):
        return None
    if fmt == "json":
        return body
    if fmt == "ndjson":
        return b"[" + b",".join(line for line in body.splitlines() if line.strip()) + b"]"
    return None


def content_format(content_type: str) -> tuple[str, str | None]:
    """(format, charset) from a Content-Type header such as `text/csv; charset=gbk`."""
    media, _, params = content_type.partition(";")
    fmt = FORMATS.get(media.strip().lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise BodyError(f"unsupported Content-Type `{media.strip()}`; use one of {known}")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return fmt, charset


def decode_text(body: bytes, charset: str | None) -> str:
    """Decode with the declared charset; undeclared bodies are UTF-8, or GBK if not UTF-8."""
    if charset is not None:
        encoding = ENCODINGS.get(charset)
        if encoding is None:
            raise BodyError(f"unsupported charset `{charset}`; use utf-8 or gbk")
        try:
            return body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise BodyError(f"body is not valid {charset} at byte {exc.start}") from exc
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Chinese government exports are often GBK without saying so.
        try:
            return body.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise BodyError(
                f"body is neither UTF-8 nor GBK (bad byte at {exc.start}); declare its charset"
            ) from exc


def parse_body(body: bytes, content_type: str, geometry_field: str = "geometry") -> ParsedBody:
    fmt, charset = content_format(content_type)
    if not body.strip():
        raise BodyError("body is empty")
    if fmt in ("json", "ndjson", "geojson") and charset in (None, "utf-8", "utf8"):
        text: str | None = None  # msgspec reads UTF-8 bytes directly: no copy
    else:
        text = decode_text(body, charset)
    if fmt == "csv":
        return _parse_csv(text if text is not None else decode_text(body, charset))
    data: bytes = text.encode() if text is not None else body
    if fmt == "ndjson":
        return _parse_ndjson(data)
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise BodyError(f"malformed JSON: {exc}") from exc
    if fmt == "geojson" or (isinstance(document, dict) and document.get("type")):
        return _from_geojson(document, geometry_field)
    if not isinstance(document, list):
        raise BodyError("a JSON body must be an array of records (or a GeoJSON FeatureCollection)")
    return _objects(document)


def _objects(items: list[Any]) -> ParsedBody:
    rows, numbers, errors = [], [], []
    for i, item in enumerate(items, 1):
        if isinstance(item, dict):
            rows.append(item)
            numbers.append(i)
        else:
            errors.append(RowError(i, f"record is a {type(item).__name__}, not an object",
                                   msgspec.json.encode(item).decode()))
    return ParsedBody(rows, numbers, errors)


def _parse_ndjson(data: bytes) -> ParsedBody:
    try:  # fast path: the whole body at once
        items = msgspec.json.decode(b"[" + b",".join(
            line for line in data.splitlines() if line.strip()) + b"]")
        return _objects(items)
    except msgspec.DecodeError:
        pass
    rows, numbers, errors = [], [], []
    for i, line in enumerate((ln for ln in data.splitlines() if ln.strip()), 1):
        try:
            item = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            errors.append(RowError(i, f"malformed JSON line: {exc}", line.decode("utf-8", "replace")))
            continue
        if isinstance(item, dict):
            rows.append(item)
            numbers.append(i)
        else:
            errors.append(RowError(i, "line is not a JSON object", line.decode("utf-8", "replace")))
    return ParsedBody(rows, numbers, errors)


def _parse_csv(text: str) -> ParsedBody:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration as exc:
        raise BodyError("CSV has no header row") from exc
    except csv.Error as exc:
        raise BodyError(f"malformed CSV header: {exc}") from exc
    if len(set(header)) != len(header):
        raise BodyError(f"CSV header repeats a column: {header}")
    rows, numbers, errors = [], [], []
    line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line += 1
            errors.append(RowError(line - 1, f"malformed CSV line: {exc}", ""))
            continue
        line += 1
        if not values:
            continue
        if len(values) != len(header):
            errors.append(RowError(line - 1, f"has {len(values)} values for {len(header)} columns",
                                   ",".join(values)))
            continue
        # An empty CSV cell means "no value", as in every spreadsheet export.
        rows.append({k: v for k, v in zip(header, values, strict=True) if v != ""})
        numbers.append(line - 1)
    return ParsedBody(rows, numbers, errors, columns=header)


def _from_geojson(document: Any, geometry_field: str) -> ParsedBody:
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise BodyError("a GeoJSON body must be a FeatureCollection")
    features = document.get("features")
    if not isinstance(features, list):
        raise BodyError("FeatureCollection has no `features` array")
    rows, numbers, errors = [], [], []
    for i, feature in enumerate(features, 1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            errors.append(RowError(i, "not a GeoJSON Feature", msgspec.json.encode(feature).decode()))
            continue
        row = dict(feature.get("properties") or {})
        row[geometry_field] = feature.get("geometry")
        rows.append(row)
        numbers.append(i)
    return ParsedBody(rows, numbers, errors)
