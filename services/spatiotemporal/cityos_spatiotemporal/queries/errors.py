"""The two ways a query is refused: bad input (422, with the reason) or an unknown name (404)."""

from litestar.exceptions import ClientException, NotFoundException


class BadQuery(ClientException):
    """The query cannot be answered as asked: the detail says why and what to change."""

    status_code = 422


class NotFound(NotFoundException):
    """An unknown dataset, subject or network."""
