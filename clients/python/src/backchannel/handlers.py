"""The listener's side behind ``backchannel agent``, without a web framework.

``backchannel agent --forward URL`` POSTs each job's payload to ``URL`` with
the headers ``X-Backchannel-Job-Id``, ``X-Backchannel-Kind``,
``X-Backchannel-Attempt`` and ``X-Backchannel-Deadline``, plus a shared secret
in ``X-Backchannel-Secret`` (``--forward-header``) when the agent has
``--forward-header-file``. A 2xx JSON answer becomes the job's result; any
other status fails the job with ``error = {"status": <status>, "body": <body>}``.

This module holds what a handler endpoint needs whatever serves it: a
:class:`Dispatcher` of handler functions by kind, the job's :class:`JobContext`
read from the headers, :class:`JobError` for a handler to fail a job on
purpose, and :func:`secret_matches`. :mod:`backchannel.django.castellum` makes
a Django view of it.

The kit's contract, whatever serves it:

* every answer, success or failure, carries ``X-Backchannel-Kit: 1``
  (:data:`KIT_HEADER`), so that the agent can tell the kit's answers from
  those of anything else at its forward URL (a web server's own ``404`` page
  for a mistyped path);
* every failure body is ``{"error": {"code": <code>, "message": <text>}}``
  (``"details"`` too when a :class:`JobError` gives some): the code says who
  failed and why. The kit's own codes (:data:`KIT_CODES`) are reserved, so a
  handler's code is never mistaken for one of them;
* a kind with no handler answers ``501 unknown_kind`` (never ``404``: that
  status belongs to the handlers' own "not found").
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from .models import Json, parse_time

logger = logging.getLogger("backchannel.handlers")

#: The header names the agent sends.
JOB_ID_HEADER = "X-Backchannel-Job-Id"
KIND_HEADER = "X-Backchannel-Kind"
ATTEMPT_HEADER = "X-Backchannel-Attempt"
DEADLINE_HEADER = "X-Backchannel-Deadline"
#: The agent's default ``--forward-header``.
DEFAULT_SECRET_HEADER = "X-Backchannel-Secret"

#: The header on every answer of the kit, and its value (the version of the
#: kit's contract): the agent recognises the kit's answers by it.
KIT_HEADER = "X-Backchannel-Kit"
KIT_VERSION = "1"

#: The status of a job whose kind has no handler: castellum does not
#: implement it (yet). Not ``404``, which is the handlers' own "not found",
#: nor ``422``, :class:`JobError`'s default.
UNKNOWN_KIND_STATUS = 501

#: The codes of the kit's own failures, which a :class:`JobError` may not use.
KIT_CODES = frozenset(
    {
        "forbidden",  # 403: no shared secret, or a wrong one
        "method_not_allowed",  # 405: not a POST
        "bad_request",  # 400: the job's headers or body are not what the agent sends
        "payload_too_large",  # 413: over the framework's body limit
        "unknown_kind",  # 501: no handler for the kind
        "internal",  # 500: the handler raised something else than a JobError
        "misconfigured",  # 500: the endpoint's own settings are wrong
    }
)

_KIND = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_CODE = re.compile(r"[A-Za-z0-9._:-]{1,100}")


@dataclass(frozen=True)
class JobContext:
    """What a handler knows about the job besides its payload."""

    id: int
    kind: str
    #: 1 on the first delivery; more when the job is sent again (delivery is
    #: at least once: a handler must be safe to repeat, or remember ``id``).
    attempt: int
    #: The job's deadline at the broker (aware, UTC); the agent gives up then.
    deadline: datetime

    def remaining(self) -> float:
        """Seconds until the deadline (0 once it has passed)."""
        return max(0.0, (self.deadline - datetime.now(timezone.utc)).total_seconds())

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> JobContext:
        """Read the agent's headers (``headers`` must match names without
        regard to case, as Django's ``request.headers`` and most do).

        Raises :class:`BadJobRequest` naming the header that is missing or wrong.
        """

        def header(name: str) -> str:
            value = headers.get(name)
            if value is None or not value.strip():
                raise BadJobRequest(f"the {name} header is missing")
            return value.strip()

        def number(name: str) -> int:
            text = header(name)
            if not (text.isascii() and text.isdigit()) or int(text) < 1:
                raise BadJobRequest(f"the {name} header is not a positive integer")
            return int(text)

        kind = header(KIND_HEADER)
        if not _KIND.fullmatch(kind):
            raise BadJobRequest(f"the {KIND_HEADER} header is not a job kind")
        try:
            deadline = parse_time(header(DEADLINE_HEADER))
        except ValueError:
            raise BadJobRequest(f"the {DEADLINE_HEADER} header is not an RFC 3339 time") from None
        return cls(
            id=number(JOB_ID_HEADER), kind=kind, attempt=number(ATTEMPT_HEADER), deadline=deadline
        )


class BadJobRequest(ValueError):
    """The request is not one the agent sends (a header or the body is wrong)."""


class JobError(Exception):
    """Raise it in a handler to fail the job with a message the submitter sees.

    The endpoint answers ``status`` (default ``422``: understood, but cannot
    be done) with ``{"error": {"code": code, "message": message, "details":
    {...}}}`` (``details`` only when given as keyword arguments, JSON values).
    Through the agent the submitter finds that body in ``job.error["body"]``:
    :class:`backchannel.JobFailed` has the status as ``handler_status``, the
    code as ``handler_code`` and quotes the message.

    ``code`` is for the submitter's program: give each failure it must tell
    apart a code of its own (``JobError("no such invitation", status=404,
    code="no_such_invitation")``); the default is ``job_error``. A code is 1 to
    100 of ``A-Z a-z 0-9 . _ : -``, and not one of the kit's own
    (:data:`KIT_CODES`, e.g. ``unknown_kind``).
    """

    def __init__(
        self, message: str, *, status: int = 422, code: str = "job_error", **details: Json
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("a JobError's status must be 4xx or 5xx (a 2xx would mean done)")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise ValueError(f"not an error code: {code!r} (1 to 100 of A-Z a-z 0-9 . _ : -)")
        if code in KIT_CODES:
            raise ValueError(
                f"the code {code!r} is the kit's own; give the handler's failure another"
            )
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details

    def body(self) -> dict[str, Json]:
        """The JSON body of the answer."""
        error: dict[str, Json] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


#: A handler: called with the job's payload and context, returns the result
#: (any JSON value for the encoder in use).
Handler = Callable[[Json, JobContext], Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Reply:
    """What the endpoint answers: a status and a JSON body (already encoded),
    with :meth:`headers`."""

    status: int
    body: bytes

    @classmethod
    def error(cls, status: int, code: str, message: str) -> Reply:
        return cls(status, _dumps({"error": {"code": code, "message": message}}))

    def headers(self) -> dict[str, str]:
        """The headers of every answer of the kit (``Content-Type`` and
        :data:`KIT_HEADER`); an endpoint adds them all."""
        return {"Content-Type": "application/json", KIT_HEADER: KIT_VERSION}


def _dumps(value: Json, encoder: type[json.JSONEncoder] = json.JSONEncoder) -> bytes:
    return json.dumps(value, cls=encoder, separators=(",", ":"), ensure_ascii=False).encode()


class Dispatcher:
    """Handler functions by job kind.

    ::

        jobs = Dispatcher()

        @jobs.handler("invitation.lookup")
        def lookup(payload, job):
            return {"name": ...}
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def handler(self, kind: str) -> Callable[[H], H]:
        """A decorator registering the function as the handler of ``kind``."""

        def register(function: H) -> H:
            self.register(kind, function)
            return function

        return register

    def register(self, kind: str, function: Handler) -> None:
        """Make ``function`` the handler of ``kind`` (once per kind)."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"not a job kind: {kind!r} (1 to 200 of A-Z a-z 0-9 . _ : -)")
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} is already registered")
        self._handlers[kind] = function

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def dispatch(
        self,
        job: JobContext,
        payload: Json,
        *,
        encoder: type[json.JSONEncoder] = json.JSONEncoder,
    ) -> Reply:
        """Run the handler of ``job.kind`` and turn what it did into a reply:
        its return value as ``200``; a :class:`JobError` as its status and
        body; an unknown kind as ``501 unknown_kind``; anything else it raises
        as a generic ``500 internal`` (logged here with its traceback, never
        sent)."""
        function = self._handlers.get(job.kind)
        if function is None:
            logger.warning("no handler for kind %s (job %s)", job.kind, job.id)
            return Reply.error(
                UNKNOWN_KIND_STATUS, "unknown_kind", f"no handler for kind {job.kind!r}"
            )
        try:
            return Reply(200, _dumps(function(payload, job), encoder))
        except JobError as exc:
            logger.info("job %s (%s) failed: %s %s", job.id, job.kind, exc.status, exc.code)
            return Reply(exc.status, _dumps(exc.body(), encoder))
        except Exception:
            logger.exception("the handler of job %s (%s) raised", job.id, job.kind)
            return Reply.error(500, "internal", "the handler failed")


def secret_matches(expected: str, given: str | None) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


def decode_payload(body: bytes) -> Json:
    """The job's payload from a request body (an empty body is ``null``)."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise BadJobRequest("the body is not JSON") from None
