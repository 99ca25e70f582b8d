"""Python client of the backchannel broker.

Submit a job and wait for its result::

    from backchannel import Client

    with Client("https://backchannel.example.org", token) as client:
        answer = client.call("invitation.lookup", {"token": "abc"}, timeout=10)

:class:`Client` (blocking) and :class:`AsyncClient` (asyncio) have the same
methods and follow the same rules; the exceptions are in
:mod:`backchannel.errors` and re-exported here. Django integrations live in
:mod:`backchannel.django` (the submitter) and :mod:`backchannel.django.castellum`
(the listener's handlers behind ``backchannel agent``).
"""

from ._plan import RetryPolicy
from ._version import __version__
from .aio import AsyncClient
from .client import Client
from .errors import (
    AlreadyAnswered,
    AlreadyTerminal,
    ApiError,
    BackchannelError,
    BadGateway,
    BadRequest,
    BodyReadError,
    Conflict,
    DatabaseReadOnly,
    DatabaseUnavailable,
    Forbidden,
    GatewayTimeout,
    Gone,
    InternalError,
    InvalidBody,
    InvalidField,
    InvalidHeader,
    InvalidId,
    InvalidJson,
    InvalidQuery,
    InvalidValue,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobNotDone,
    JobStillOpen,
    ListenerBusy,
    MethodNotAllowed,
    MissingHeader,
    NotFound,
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
    ShuttingDown,
    TooManyRequests,
    TooManyWaiting,
    TransportError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnknownField,
    UnsupportedMediaType,
)
from .models import Job, JobState, Json, Listener, Stats

__all__ = [
    "AlreadyAnswered",
    "AlreadyTerminal",
    "ApiError",
    "AsyncClient",
    "BackchannelError",
    "BadGateway",
    "BadRequest",
    "BodyReadError",
    "Client",
    "Conflict",
    "DatabaseReadOnly",
    "DatabaseUnavailable",
    "Forbidden",
    "GatewayTimeout",
    "Gone",
    "InternalError",
    "InvalidBody",
    "InvalidField",
    "InvalidHeader",
    "InvalidId",
    "InvalidJson",
    "InvalidQuery",
    "InvalidValue",
    "Job",
    "JobCancelled",
    "JobExpired",
    "JobFailed",
    "JobNotDone",
    "JobState",
    "JobStillOpen",
    "Json",
    "Listener",
    "ListenerBusy",
    "MethodNotAllowed",
    "MissingHeader",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "RequestTimeout",
    "RetryPolicy",
    "ShuttingDown",
    "Stats",
    "TooManyRequests",
    "TooManyWaiting",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnknownField",
    "UnsupportedMediaType",
    "__version__",
]
