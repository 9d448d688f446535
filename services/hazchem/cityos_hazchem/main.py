"""`cityos-hazchem`: run the hazardous-chemical supervision service; `cityos-hazchem demo-data
DIR` writes the demo scenario's datasets (registrations and files) for loading through ingestion."""

import asyncio
import sys

from cityos_hazchem import demo
from cityos_hazchem.app import build_app
from cityos_kit.app import serve
from cityos_kit.config import load_settings


def main() -> None:
    if sys.argv[1:2] == ["demo-data"]:
        demo.main(sys.argv[2:])
        return
    settings = load_settings("hazchem")
    asyncio.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
