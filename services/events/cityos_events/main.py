"""`cityos-events`: run the event hub."""

import asyncio

from uvicorn.loops.auto import auto_loop_factory

from cityos_events.app import build_app
from cityos_kit.app import serve
from cityos_kit.config import load_settings


def main() -> None:
    settings = load_settings("events")
    # uvloop where installed (uvicorn's choice): intake is many small socket writes to
    # Postgres, NATS and clients, which the default loop makes several times dearer.
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        runner.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
