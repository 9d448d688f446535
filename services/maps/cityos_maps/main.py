"""`cityos-maps`: run the themed-maps service (the web application and the data behind it)."""

import asyncio

from cityos_kit.app import serve
from cityos_kit.config import load_settings
from cityos_maps.app import build_app


def main() -> None:
    settings = load_settings("maps")
    asyncio.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
