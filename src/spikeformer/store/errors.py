"""Errors raised by the store. Callers catch `StoreError` to handle every database failure the store names."""

from __future__ import annotations

__all__ = ["DatabaseUnavailableError", "SchemaOutOfDateError", "StoreError"]


class StoreError(Exception):
    """Base class of the errors raised by `spikeformer.store`."""


class SchemaOutOfDateError(StoreError):
    """The database schema is not at the revision this code expects (run `spikeformer db upgrade`)."""


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached (the message shows the URL with its password hidden)."""
