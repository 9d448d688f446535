"""`cityos-import`: push a file into a dataset through the public API, in batches.

    cityos-import trucks.csv --dataset muck_trucks [--encoding gbk] [--batch-rows 10000]

Each batch carries an Idempotency-Key derived from the file's content and the batch's place in
it, so an interrupted import can simply be run again: batches already accepted are answered from
the first time and nothing is stored twice. Ends with a summary (received = accepted + rejected)
and where to find the dead letters.
"""

import argparse
import asyncio
import hashlib
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
from tqdm import tqdm

from cityos_kit.client_auth import ClientCredentials

CONTENT_TYPES = {".csv": "text/csv", ".ndjson": "application/x-ndjson",
                 ".jsonl": "application/x-ndjson", ".json": "application/json",
                 ".geojson": "application/geo+json"}


def batches(data: bytes, kind: str, rows: int) -> Iterator[tuple[bytes, int]]:
    """(body, record count) chunks of the file, each a valid body of the same format."""
    if kind in ("text/csv", "application/x-ndjson"):
        lines = data.splitlines(keepends=True)
        header = [lines.pop(0)] if kind == "text/csv" and lines else []
        for lo in range(0, len(lines), rows):
            chunk = lines[lo:lo + rows]
            yield b"".join(header + chunk), sum(1 for ln in chunk if ln.strip())
        return
    document = msgspec.json.decode(data)
    if kind == "application/geo+json":
        features = document.get("features", [])
        for lo in range(0, len(features), rows):
            part = features[lo:lo + rows]
            yield msgspec.json.encode({"type": "FeatureCollection", "features": part}), len(part)
        return
    for lo in range(0, len(document), rows):
        yield msgspec.json.encode(document[lo:lo + rows]), len(document[lo:lo + rows])


class ImportFailed(Exception):
    pass


async def import_file(http: httpx.AsyncClient, path: Path, dataset: str, *,
                      version: int | None = None, encoding: str | None = None,
                      content_type: str | None = None, batch_rows: int = 10_000
                      ) -> tuple[Counter[str], Counter[str]]:
    """Push the file batch by batch; returns (received/accepted/rejected totals, reasons)."""
    data = path.read_bytes()
    kind = content_type or CONTENT_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ImportFailed(f"cannot tell the format of {path.name}; pass --content-type")
    header = f"{kind}; charset={encoding}" if encoding else kind
    digest = hashlib.sha256(data).hexdigest()[:16]
    params = {"version": version} if version else {}
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    parts = list(batches(data, kind, batch_rows))
    with tqdm(total=sum(n for _, n in parts), unit="rec", desc=dataset) as bar:
        for i, (body, count) in enumerate(parts):
            response = await http.post(
                f"/datasets/{dataset}/records", content=body, params=params,
                headers={"content-type": header,
                         "Idempotency-Key": f"import-{digest}-{batch_rows}-{i}"})
            if response.status_code != 200:
                raise ImportFailed(f"batch {i + 1}/{len(parts)} refused: "
                                   f"{response.status_code} {response.text[:500]}")
            result = response.json()
            for key in ("received", "accepted", "rejected"):
                totals[key] += result[key]
            reasons.update(result["reasons"])
            bar.update(count)
    return totals, reasons


async def run(args: argparse.Namespace) -> int:
    auth = (ClientCredentials(args.issuer, args.client_id, os.environ["CITYOS_CLIENT_SECRET"])
            if args.client_id else None)
    async with httpx.AsyncClient(base_url=args.url, auth=auth, timeout=300) as http:
        try:
            totals, reasons = await import_file(
                http, args.file, args.dataset, version=args.version, encoding=args.encoding,
                content_type=args.content_type, batch_rows=args.batch_rows)
        except ImportFailed as exc:
            print(exc, file=sys.stderr)
            return 1
    print(f"{args.file.name} -> {args.dataset}: received {totals['received']}, "
          f"accepted {totals['accepted']}, rejected {totals['rejected']}")
    if reasons:
        print("rejected because: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
        print(f"dead letters: GET {args.url}/datasets/{args.dataset}/dead-letters.ndjson")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(prog="cityos-import", description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--dataset", required=True)
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--encoding", default=None, help="e.g. gbk (default: UTF-8, GBK detected)")
    p.add_argument("--content-type", default=None)
    p.add_argument("--batch-rows", type=int, default=10_000)
    p.add_argument("--url", default=os.environ.get("CITYOS_INGESTION_URL",
                                                   "http://127.0.0.1:8001"))
    p.add_argument("--issuer", default=os.environ.get("CITYOS_AUTH_ISSUER",
                                                      "http://127.0.0.1:8009"))
    p.add_argument("--client-id", default=os.environ.get("CITYOS_CLIENT_ID", ""),
                   help="with CITYOS_CLIENT_SECRET in the environment")
    sys.exit(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
