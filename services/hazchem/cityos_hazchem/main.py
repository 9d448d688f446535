"""`cityos-hazchem`: run the hazardous-chemical supervision service."""

import asyncio

from cityos_hazchem.app import build_app
from cityos_kit.app import serve
from cityos_kit.config import load_settings


def main() -> None:
    settings = load_settings("hazchem")
    asyncio.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
