"""Domain errors the data layer raises instead of driver exceptions, so handlers map them to HTTP."""

from __future__ import annotations


class NotFound(Exception):
    """The row does not exist, or belongs to someone else (the caller must not learn which)."""


class Conflict(Exception):
    """A uniqueness rule would be broken (e.g. an email already registered)."""
