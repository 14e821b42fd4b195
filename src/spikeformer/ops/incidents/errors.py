"""The errors of the incident operations, each with the HTTP status and the CLI exit code it stands for.

The API answers ``err.http_status`` with ``{"error": str(err)}``; the CLI prints the message and exits with
``err.exit_code``. Both read the class attributes, so a new error class needs no change in either.

=========================  ===========  =========  ===============================================
Error                      http_status  exit_code  Meaning
=========================  ===========  =========  ===============================================
``IncidentError``          400          2          any incident error (the base class)
``IncidentInputError``     400          2          an argument is invalid (also a ``ValueError``)
``IncidentNotFoundError``  404          1          no incident has the given id
``IncidentConflictError``  409          2          the change does not apply to the incident's state
=========================  ===========  =========  ===============================================
"""

from __future__ import annotations

__all__ = ["IncidentConflictError", "IncidentError", "IncidentInputError", "IncidentNotFoundError"]


class IncidentError(Exception):
    """Base class of the errors of the incident operations; the message says what was wrong and what is accepted.

    Attributes:
        http_status: The status the API answers with.
        exit_code: The exit code of the CLI (2: a usage or state problem; 1: the incident does not exist).
    """

    http_status: int = 400
    exit_code: int = 2


class IncidentNotFoundError(IncidentError):
    """No incident has the given id (HTTP 404, exit code 1)."""

    http_status: int = 404
    exit_code: int = 1


class IncidentConflictError(IncidentError):
    """The change does not apply to the incident in its current state (HTTP 409, exit code 2)."""

    http_status: int = 409
    exit_code: int = 2


class IncidentInputError(IncidentError, ValueError):
    """An argument is invalid (HTTP 400, exit code 2)."""

    http_status: int = 400
    exit_code: int = 2
