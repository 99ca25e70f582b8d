"""The exceptions of the client, one class per error code of the API.

Everything the client raises on purpose is a :class:`BackchannelError`, with
``status`` (the HTTP status, ``None`` when there was no response), ``code``
(the API's error code, or a code of the client's own for the errors that are
not API answers), ``message`` and ``job`` (the job, where the contract or the
situation gives one).

Three families:

* :class:`ApiError`: the broker (or a proxy in front of it) answered with an
  error status. Grouped by status (:class:`BadRequest`, :class:`Conflict`,
  :class:`Unavailable`, ...), with one subclass per code (:class:`InvalidField`,
  :class:`AlreadyTerminal`, :class:`TooManyWaiting`, ...).
* :class:`TransportError` and :class:`UnexpectedResponse`: no usable answer.
* :class:`JobNotDone`: :meth:`Client.call` got no result: the job
  :class:`JobFailed`, :class:`JobExpired`, was :class:`JobCancelled`, or was
  :class:`JobStillOpen` at the caller's deadline.

Sealed jobs (:mod:`backchannel.sealed`) add :class:`SealError`, the base of
everything sealing raises: :class:`SealRefused` (castellum's agent refused the
sealed request: one subclass per ``seal_*`` code, each a :class:`JobFailed`),
:class:`ForeignAnswer` (an answer that is not castellum's), and the broker's
own refusals of a submit that is not sealed as it requires
(:class:`NotSealed`, :class:`SealedHeaderMismatch`, :class:`UntrustedSigner`).

Messages come from the broker's error bodies or from this module, never from
the request: no exception carries the token.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

from .models import Job, Json


class BackchannelError(Exception):
    """Base of every error the client raises on purpose."""

    #: Whether the same request may succeed if it is sent again later
    #: (network errors, ``408``, ``429``, ``502``, ``503``, ``504``).
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        job: Job | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.job = job

    def __str__(self) -> str:
        label = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        return f"{label}: {self.message}" if label else self.message

    def __repr__(self) -> str:
        job = f", job={self.job.id}" if self.job is not None else ""
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}{job})"
        )


class TransportError(BackchannelError):
    """No response: the connection failed, was cut, or timed out.

    The underlying ``httpx`` exception is the ``__cause__``.
    """

    retryable = True


class UnexpectedResponse(BackchannelError):
    """A response that does not follow the contract (e.g. a proxy's HTML page
    with a success status, or a job without its fields)."""


class ApiError(BackchannelError):
    """The broker, or a proxy in front of it, answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        job: Job | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, job=job)
        #: Seconds from the ``Retry-After`` header, if any.
        self.retry_after = retry_after


# 400 ---------------------------------------------------------------------------


class BadRequest(ApiError):
    """``400``: the request was malformed; the message names what."""


class InvalidJson(BadRequest):
    """``400 invalid_json``: the body is not JSON."""


class InvalidBody(BadRequest):
    """``400 invalid_body``: the body is not a JSON object."""


class InvalidField(BadRequest):
    """``400 invalid_field``: a field's value is out of the contract (e.g. ``kind``)."""


class UnknownField(BadRequest):
    """``400 unknown_field``: the body has a field the API does not know."""


class InvalidQuery(BadRequest):
    """``400 invalid_query``: e.g. ``wait`` out of range."""


class InvalidId(BadRequest):
    """``400 invalid_id``: the job id in the path is not a positive integer."""


class InvalidHeader(BadRequest):
    """``400 invalid_header``: e.g. ``X-Listener-Id`` too long."""


class MissingHeader(BadRequest):
    """``400 missing_header``."""


class BodyReadError(BadRequest):
    """``400 body_read_error``: the body could not be read."""


class InvalidValue(BadRequest):
    """``400 invalid_value``: the database refused a value (e.g. a number out of its range)."""


# 401-415 -----------------------------------------------------------------------


class Unauthorized(ApiError):
    """``401 unauthorized``: no token, or an unknown one."""


class Forbidden(ApiError):
    """``403 forbidden``: a valid token of the other role."""


class NotFound(ApiError):
    """``404 not_found``: no job with this id (or none in the token's
    channels), no such channel for this token (the message says ``no such
    channel``), or no such endpoint."""


class MethodNotAllowed(ApiError):
    """``405 method_not_allowed``."""


class RequestTimeout(ApiError):
    """``408 request_timeout``: the body did not arrive in time."""

    retryable = True


class Conflict(ApiError):
    """``409``."""


class AlreadyTerminal(Conflict):
    """``409 already_terminal``: the job cannot be cancelled; it is in ``job``."""


class AlreadyAnswered(Conflict):
    """``409 already_answered``: a different answer was accepted; the job is in ``job``."""


class ListenerBusy(Conflict):
    """``409 listener_busy``: another listener holds the stream."""


class Gone(ApiError):
    """``410 gone``: the job expired or was cancelled; it is in ``job``."""


class PayloadTooLarge(ApiError):
    """``413 payload_too_large``: the body is over the broker's limit."""


class UnsupportedMediaType(ApiError):
    """``415 unsupported_media_type``."""


class SealError(BackchannelError):
    """Base of every error about sealed jobs (``sealed/v1``): castellum's
    refusals (:class:`SealRefused`), answers that are not castellum's
    (:class:`ForeignAnswer`) and the broker's refusals of a submit that is not
    sealed as it requires. Carries no key material and no plain payload."""


class NotSealed(BadRequest, SealError):
    """``400 not_sealed``: the broker requires sealed payloads
    (``BACKCHANNEL_REQUIRE_SEALED``) and this one is not a well-formed
    ``sealed/v1`` request. Nothing was stored."""


class SealedHeaderMismatch(BadRequest, SealError):
    """``400 seal_mismatch``: the broker found that the sealed header's kind
    differs from the job's kind. Nothing was stored."""


class UntrustedSigner(Forbidden, SealError):
    """``403 seal_bad_signature``: the broker checks the signature at the door
    (``BACKCHANNEL_SEAL_SIGNERS``) and this signer is not one it trusts, or the
    signature does not verify. Nothing was stored."""


class TooManyRequests(ApiError):
    """``429`` (from a proxy or rate limiter in front of the broker)."""

    retryable = True


class ChannelFull(TooManyRequests):
    """``429 channel_full``: the channel holds as many open jobs as its limit
    (``max_open_jobs``) allows. Nothing was stored; retried after
    ``Retry-After`` within the caller's deadline."""


# 5xx ---------------------------------------------------------------------------


class InternalError(ApiError):
    """``500 internal``: a fault in the broker (never retried)."""


class BadGateway(ApiError):
    """``502`` (from a proxy in front of the broker)."""

    retryable = True


class Unavailable(ApiError):
    """``503``: retried after ``Retry-After`` within the caller's deadline."""

    retryable = True


class DatabaseUnavailable(Unavailable):
    """``503 database_unavailable``."""


class DatabaseReadOnly(DatabaseUnavailable):
    """``503 database_read_only``: the database refuses writes (a failover in
    progress, a standby); nothing was stored."""


class ShuttingDown(Unavailable):
    """``503 shutting_down``: this instance is stopping; another one will answer."""


class NotReady(Unavailable):
    """``503 not_ready``."""


class TooManyWaiting(Unavailable):
    """``503 too_many_waiting``: too many requests wait on this instance (nothing was stored)."""


class Overloaded(Unavailable):
    """``503 overloaded``: too many requests queue for the database here (nothing was stored)."""


class GatewayTimeout(ApiError):
    """``504`` (from a proxy in front of the broker)."""

    retryable = True


# The job did not end done --------------------------------------------------------


class JobNotDone(BackchannelError):
    """:meth:`Client.call` has no result to return; the job is in ``job``."""

    job: Job

    def __init__(self, message: str, *, code: str, job: Job) -> None:
        super().__init__(message, code=code, job=job)


class JobFailed(JobNotDone):
    """The listener answered with an error (``job.error``).

    Through ``backchannel agent``, ``error`` is ``{"status": <the handler's
    HTTP status>, "body": <its body>}`` when the handler answered, or
    ``{"code": <the agent's code>, "message": ...}`` for a failure the agent
    named itself (the handler unreachable, a redirect, ...);
    :attr:`handler_status`, :attr:`handler_code`, :attr:`agent_code` and
    :attr:`body` unpack it, and the message quotes the body's error message
    (or the agent's) when there is one.

    With the castellum kit behind the agent, the status and the code tell the
    failures apart: a handler's own "not found" is ``404`` with the handler's
    code (``no_such_invitation``, or the default ``job_error``); a kind with no
    handler is ``501 unknown_kind``; a ``404`` without a code is not the kit's
    answer at all (the agent's forward URL points at a wrong path; an agent
    with ``BACKCHANNEL_EXPECT_KIT=true`` says so: :attr:`agent_code`
    ``not_the_kit``).
    """

    def __init__(self, job: Job) -> None:
        super().__init__(describe_failure(job.error), code="failed", job=job)

    @property
    def error(self) -> Json:
        """The listener's error, as the broker stores it."""
        return self.job.error

    @property
    def handler_status(self) -> int | None:
        """The HTTP status the agent's handler answered with, if the error says."""
        status = _get(self.job.error, "status")
        return status if isinstance(status, int) and not isinstance(status, bool) else None

    @property
    def handler_code(self) -> str | None:
        """The code of the handler's failure: ``error.code`` of the body the
        agent's handler answered with (the castellum kit's shape,
        ``{"error": {"code", "message"}}``); ``None`` when the body has none
        (not the kit's answer, or the handler was not reached)."""
        code = _get(_get(self.body, "error"), "code")
        return code if isinstance(code, str) else None

    @property
    def agent_code(self) -> str | None:
        """The code of a failure the agent named itself (``error.code``), when
        its handler gave no answer of its own: ``handler_unreachable`` (no one
        took the connection, tried until shortly before the deadline),
        ``handler_timeout`` (no answer in the job's time), ``handler_redirect``
        (the handler answered a redirect, which the agent never follows),
        ``not_the_kit`` (the agent expects the castellum kit and the answer is
        not the kit's: a wrong forward URL), ``handler_request_failed``; the
        refusals of sealed requests (``seal_*``, :class:`SealRefused`) too.
        ``None`` when the error is the handler's own answer
        (:attr:`handler_code`)."""
        code = _get(self.job.error, "code")
        return code if isinstance(code, str) else None

    @property
    def body(self) -> Json:
        """The body the agent's handler answered with, if the error has one."""
        return _get(self.job.error, "body")


#: What :class:`JobExpired` says of a job no listener ever took.
NO_LISTENER = "no listener took the job (attempts 0): is the agent running?"


class JobExpired(JobNotDone):
    """The job's deadline passed before any answer.

    When no listener ever took the job (``job.attempts == 0``: no agent held
    the stream while it waited), the message says so (:data:`NO_LISTENER`).
    """

    def __init__(self, job: Job) -> None:
        message = "no answer before the job's deadline"
        if job.attempts == 0:
            message = f"{message}: {NO_LISTENER}"
        super().__init__(message, code="expired", job=job)


class JobCancelled(JobNotDone):
    """The job was cancelled."""

    def __init__(self, job: Job) -> None:
        super().__init__("the job was cancelled", code="cancelled", job=job)


class JobStillOpen(JobNotDone):
    """The caller's deadline came while the job was still open.

    ``job`` is its last state seen; the job lives on at the broker until its
    own deadline (answer, :meth:`Client.wait` on it again, or cancel it).
    """

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"the job is still {job.state} at the caller's deadline",
            code="still_open",
            job=job,
        )


# Sealed jobs: castellum's refusals and answers that are not castellum's ------------


class SealRefused(JobFailed, SealError):
    """Castellum's agent refused the sealed request and never called its
    handler: the job is ``failed`` with the plain error ``{"code": "seal_...",
    "message": ...}`` (``error``). ``code`` is that refusal code; each code
    has its own subclass. A code this client does not know raises this class.

    A refusal is plain (the agent seals answers only to requests it could
    open), so the broker could fake one: it carries no data, only a failure.
    """

    def __init__(self, job: Job) -> None:
        code = _get(job.error, "code")
        detail = _get(job.error, "message")
        code = code if isinstance(code, str) else "seal_refused"
        message = f"castellum refused the sealed request ({code})"
        if isinstance(detail, str) and detail:
            message = f"{message}: {detail}"
        JobNotDone.__init__(self, message, code=code, job=job)


class SealMalformed(SealRefused):
    """``seal_malformed``: the envelope or its header is not well formed, its
    version or suite unknown, or the HPKE open failed."""


class SealBadSignature(SealRefused):
    """``seal_bad_signature``: the signer is not pinned at castellum, or the
    signature does not verify."""


class SealMismatch(SealRefused):
    """``seal_mismatch``: the header names another channel, or another kind than the job's."""


class SealExpired(SealRefused):
    """``seal_expired``: castellum got the request after its ``exp`` (plus 60 s)."""


class SealUnknownKey(SealRefused):
    """``seal_unknown_key``: the request is sealed to a recipient key castellum
    does not hold (a retired key, or another castellum's)."""


class SealReplay(SealRefused):
    """``seal_replay``: the same sealed request was seen before under another job id."""


class SealRequired(SealRefused):
    """``seal_required``: castellum's agent requires sealed payloads and got a plain one."""


#: Castellum's refusal codes (SEALED.md), one class each.
REFUSALS: dict[str, type[SealRefused]] = {
    "seal_malformed": SealMalformed,
    "seal_bad_signature": SealBadSignature,
    "seal_mismatch": SealMismatch,
    "seal_expired": SealExpired,
    "seal_unknown_key": SealUnknownKey,
    "seal_replay": SealReplay,
    "seal_required": SealRequired,
}


def refusal_for(job: Job) -> SealRefused | None:
    """The refusal a ``failed`` job's plain error is, if it is one: an object
    whose ``code`` starts with ``seal_``."""
    code = _get(job.error, "code")
    if not isinstance(code, str) or not code.startswith("seal_"):
        return None
    return REFUSALS.get(code, SealRefused)(job)


class ForeignAnswer(SealError):
    """The answer to a sealed request is not castellum's: it is not sealed (and
    not a refusal), it does not open with the request's handle, or its sealed
    header names another job, ``ref`` or outcome. Whoever wrote it (the broker,
    its database, a listener token) could not read the request: nothing in it
    is trusted, and the result is withheld. ``job`` is the job as stored.
    """

    def __init__(self, reason: str, *, job: Job | None = None) -> None:
        super().__init__(f"the answer is not castellum's: {reason}", code="foreign_answer", job=job)


def _get(value: Json, key: str) -> Json:
    return value.get(key) if isinstance(value, dict) else None


def describe_failure(error: Json) -> str:
    """A one-line description of a failed job's ``error``.

    Knows the agent's shapes (``{"status", "body"}`` and ``{"message"}``) and
    the castellum kit's body (``{"error": {"code", "message"}}``).
    """
    status = _get(error, "status")
    body = _get(error, "body")
    detail = _get(_get(body, "error"), "message") or _get(body, "message") or _get(error, "message")
    if not isinstance(detail, str):
        detail = None
    if isinstance(status, int) and detail:
        return f"the handler answered {status}: {detail}"
    if isinstance(status, int):
        return f"the handler answered {status}"
    if detail:
        return f"the job failed: {detail}"
    return "the job failed"


# From a response -----------------------------------------------------------------

_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_json": InvalidJson,
    "invalid_body": InvalidBody,
    "invalid_field": InvalidField,
    "unknown_field": UnknownField,
    "invalid_query": InvalidQuery,
    "invalid_id": InvalidId,
    "invalid_header": InvalidHeader,
    "missing_header": MissingHeader,
    "body_read_error": BodyReadError,
    "invalid_value": InvalidValue,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "method_not_allowed": MethodNotAllowed,
    "request_timeout": RequestTimeout,
    "already_terminal": AlreadyTerminal,
    "already_answered": AlreadyAnswered,
    "listener_busy": ListenerBusy,
    "gone": Gone,
    "payload_too_large": PayloadTooLarge,
    "not_sealed": NotSealed,
    "seal_mismatch": SealedHeaderMismatch,
    "seal_bad_signature": UntrustedSigner,
    "unsupported_media_type": UnsupportedMediaType,
    "internal": InternalError,
    "database_unavailable": DatabaseUnavailable,
    "database_read_only": DatabaseReadOnly,
    "shutting_down": ShuttingDown,
    "not_ready": NotReady,
    "too_many_waiting": TooManyWaiting,
    "overloaded": Overloaded,
    "channel_full": ChannelFull,
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
    500: InternalError,
    502: BadGateway,
    503: Unavailable,
    504: GatewayTimeout,
}

#: Statuses whose request is sent again (after ``Retry-After``, else a backoff).
RETRY_STATUSES = frozenset(status for status, cls in _BY_STATUS.items() if cls.retryable)


def exception_for(status: int, code: str | None) -> type[ApiError]:
    """The class for an error answer: by code if known (and of that status),
    else by status, else :class:`ApiError`."""
    by_code = _BY_CODE.get(code or "")
    by_status = _BY_STATUS.get(status, ApiError)
    if by_code is not None and issubclass(by_code, by_status):
        return by_code
    return by_status


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the broker sends delta-seconds; an HTTP date
    from a proxy is not honoured and counts as absent)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error response (its body need not be JSON)."""
    status = response.status_code
    code: str | None = None
    message = f"HTTP {status} {response.reason_phrase}".strip()
    job: Job | None = None
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("code"), str):
            code = error["code"]
        if isinstance(error.get("message"), str):
            message = error["message"]
        if error.get("job") is not None:
            try:
                job = Job.from_json(error["job"])
            except (KeyError, TypeError, ValueError):
                job = None
    cls = exception_for(status, code)
    return cls(message, status=status, code=code, job=job, retry_after=retry_after(response))
