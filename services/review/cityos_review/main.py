"""`cityos-review`: run the efficiency review."""

import asyncio

from cityos_kit.app import serve
from cityos_kit.config import load_settings
from cityos_review.app import build_app


def main() -> None:
    settings = load_settings("review")
    asyncio.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
