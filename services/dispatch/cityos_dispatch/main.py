"""`cityos-dispatch`: run dispatch; `cityos-dispatch staff-dataset` prints the registration of
the field-staff position dataset to POST to ingestion's /datasets once per city."""

import asyncio
import sys

import msgspec

from cityos_dispatch.app import build_app
from cityos_dispatch.staff import FIELD_STAFF_DATASET
from cityos_kit.app import serve
from cityos_kit.config import load_settings


def main() -> None:
    if sys.argv[1:] == ["staff-dataset"]:
        print(msgspec.json.format(msgspec.json.encode(FIELD_STAFF_DATASET)).decode())
        return
    settings = load_settings("dispatch")
    asyncio.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
