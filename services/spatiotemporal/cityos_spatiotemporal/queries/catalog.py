"""Which datasets and subjects exist: unknown names are a 404 with the name, never an empty
answer that looks like "nothing there"."""

import asyncpg

from cityos_spatiotemporal.queries.errors import NotFound


async def require_observations(conn: asyncpg.Connection, dataset: str) -> None:
    if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM latest_positions WHERE dataset = $1)", dataset):
        raise NotFound(detail=f"no observations of dataset `{dataset}` are stored")


async def require_entities(conn: asyncpg.Connection, dataset: str) -> None:
    if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM entity_states WHERE dataset = $1)", dataset):
        raise NotFound(detail=f"no entities of dataset `{dataset}` are stored")


async def require_subject(conn: asyncpg.Connection, dataset: str, subject: str) -> None:
    if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM latest_positions WHERE dataset = $1 AND subject = $2)",
            dataset, subject):
        await require_observations(conn, dataset)
        raise NotFound(detail=f"no observations of `{subject}` in dataset `{dataset}`")
