"""API pagination: limit/offset, with a ceiling on the page size."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pages; a larger `limit` is served as `max_limit` rows.

    Without a ceiling, a client can ask for a page of any size: one request could read a whole
    table, and a limit beyond a database integer failed as a server error. Offsets past the end
    already answer an empty page before any query is made.
    """

    max_limit = 1000
