"""The client's behaviour, written once, without I/O.

Each operation is a *plan*: a generator that yields :class:`Send` (an HTTP
request to make) and :class:`Pause` (a time to sleep) steps, and is sent the
``httpx.Response`` of each request (or has the ``httpx`` transport exception
thrown into it). :class:`backchannel.Client` and
:class:`backchannel.AsyncClient` drive the same plans; only the I/O differs.

The rules of the contract live here:

* one logical request is retried on network errors and on ``408``, ``429``,
  ``502``, ``503`` and ``504`` (after ``Retry-After`` when given), a bounded
  number of times and never past the caller's deadline;
* a submit always carries an idempotency key, the same one on every retry, so
  a retried submit never creates a second job;
* a ``202`` is followed with ``GET /v1/jobs/{id}?wait=...`` until the job ends
  or the caller's deadline comes; each wait is bounded by the time left;
* with a :class:`~backchannel.sealed.Sealer`, a payload is sealed once per
  call (retries send the same bytes) and its ``ref`` is the idempotency key;
* what no retry can mend is logged on the logger ``backchannel`` (see
  :func:`log_refusal`), and so is giving up on a retried request: a wrong
  token must not pass for a slow listener.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Union
from urllib.parse import urlsplit, urlunsplit

import httpx

from ._channels import CHANNEL_ROUTES, DEFAULT_CHANNEL, channel_path, check_channel
from .errors import (
    AlreadyTerminal,
    ApiError,
    BackchannelError,
    Conflict,
    Forbidden,
    Gone,
    InternalError,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobStillOpen,
    NotFound,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UntrustedSigner,
    error_from_response,
    retry_after,
)
from .models import Job, JobState, Json, Listener, Stats
from .sealed import DEFAULT_JOB_TIMEOUT, AnswerHandle, SealedJob, Sealer

T = TypeVar("T")

#: The client's logger. Its records name the request (method and URL, without
#: user info or query) and quote the broker's error message, never a header:
#: no record holds the token.
logger = logging.getLogger("backchannel")

#: Seconds kept back from the time left when asking the broker to wait, so that
#: its answer (``202`` when the wait runs out) arrives before the caller's
#: deadline rather than just after it.
LATENCY_RESERVE = 0.1

#: When :meth:`Client.call` picks the job's own timeout, it is this much shorter
#: than the caller's (at most half of it), so that a job nobody answered is seen
#: to expire (:class:`JobExpired`) rather than still open.
EXPIRY_MARGIN = 0.25

#: The broker's message for a channel that does not exist or is outside the
#: token's channels (``404 not_found``, raised as :class:`NotFound`).
NO_SUCH_CHANNEL = "no such channel"


@dataclass(frozen=True)
class Send:
    """Make one HTTP request. ``path`` is relative to the client's base URL."""

    method: str
    path: str
    params: Mapping[str, str]
    content: bytes | None
    timeout: float


@dataclass(frozen=True)
class Pause:
    """Sleep this many seconds."""

    seconds: float


Step = Union[Send, Pause]
Plan = Generator[Step, Union[httpx.Response, None], T]


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried. Retries never run past the caller's deadline."""

    #: Most tries of one request, the first included.
    attempts: int = 10
    #: Pause after the first failure without ``Retry-After``; doubles each time.
    backoff: float = 0.1
    #: Longest pause after a failure without ``Retry-After``.
    max_backoff: float = 2.0

    def pause(self, failures: int) -> float:
        """The pause after the ``failures``-th failure in a row, with jitter
        (between half and all of the exponential step)."""
        step = min(self.max_backoff, self.backoff * 2.0 ** (failures - 1))
        return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True)
class Options:
    """What a client was configured with (shared by both clients)."""

    timeout: float
    max_wait: float
    retry: RetryPolicy

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError("timeout must be more than 0 seconds")
        if not self.max_wait > LATENCY_RESERVE:
            raise ValueError(f"max_wait must be more than {LATENCY_RESERVE} seconds")
        if self.retry.attempts < 1:
            raise ValueError("retry.attempts must be at least 1")


class Deadline:
    """A point in time on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(
                "the time to wait (wait, or the client's timeout) must be more than 0 seconds"
            )
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


def _send(request: Send) -> Plan[httpx.Response]:
    response = yield request
    if response is None:  # pragma: no cover - a driver bug
        raise RuntimeError("the driver sent no response for a request")
    return response


def _pause(seconds: float) -> Plan[None]:
    yield Pause(seconds)


def _transport_error(exc: httpx.TransportError) -> TransportError:
    # httpx's message says what failed ("Connection refused", "timed out"); it
    # never quotes the request's headers, so the token cannot end up in it.
    return TransportError(f"no response from the broker: {type(exc).__name__}: {exc}")


def _can_retry(exc: httpx.TransportError) -> bool:
    # A malformed URL or request will not get better by sending it again.
    return not isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError))


def public_url(url: str) -> str:
    """``url`` as it may be logged: without user info, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:
        return "(the broker)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _target(request: Send, broker: str) -> str:
    where = f"{broker.rstrip('/')}/{request.path}" if broker else request.path
    return f"{request.method} {where}"


def log_refusal(request: Send, failure: ApiError, broker: str = "") -> None:
    """Log an error answer that no retry can mend, on the logger ``backchannel``.

    ``ERROR`` for what says the client's set-up or the caller's request is
    wrong (``401``: an unknown token; ``403``: a token of the other role;
    ``400``s; a ``404`` that is not "no such job", i.e. a wrong URL, or a
    channel that does not exist or is not the token's; ``405``, ``413``,
    ``415``; ``500``: a fault in the broker; any status the contract does not
    give). ``INFO`` for answers about a job's state, which the caller
    handles (``404 not_found`` on a job, ``409``, ``410``).
    """
    job_route = request.path.startswith("v1/jobs/")
    if isinstance(failure, (Conflict, Gone)) or (
        isinstance(failure, NotFound) and failure.code == "not_found" and job_route
    ):
        logger.info("%s: %s", _target(request, broker), failure)
        return
    hint = ""
    if isinstance(failure, Unauthorized):
        hint = "the broker does not know this token: check the token, or the file it was read from"
    elif isinstance(failure, Forbidden) and not isinstance(failure, UntrustedSigner):
        hint = (
            "the token is valid but of the other role (a listener token where a submitter "
            "token is needed, or the reverse)"
        )
    elif isinstance(failure, NotFound) and request.path.startswith(CHANNEL_ROUTES):
        hint = (
            "no such channel for this token: check the client's channel and the token's "
            "channels in the broker's token file"
            if failure.message.startswith(NO_SUCH_CHANNEL)
            else "no such endpoint: check the broker's URL and its path prefix, and that the "
            "broker knows channels (issue 24)"
        )
    elif isinstance(failure, NotFound):
        hint = "no such endpoint: check the broker's URL and its path prefix"
    elif isinstance(failure, InternalError):
        hint = "a fault in the broker: its log has the cause"
    logger.error(
        "%s: refused with %s%s", _target(request, broker), failure, f" ({hint})" if hint else ""
    )


def exchange(
    build: Callable[[float], Send], deadline: Deadline, policy: RetryPolicy, broker: str = ""
) -> Plan[httpx.Response]:
    """One logical request, retried until it gets a final answer.

    ``build`` makes the request from the seconds left before the deadline (a
    waiting request asks for less as time passes). Returns the first 2xx
    response; raises the mapped :class:`ApiError` for an error answer, or the
    last failure when no retry is left or the next one would end past the
    deadline. ``broker`` (the base URL, as :func:`public_url` gives it) is
    for the log records: a refusal no retry can mend is logged
    (:func:`log_refusal`), and so is giving up on a retried request
    (``WARNING``).
    """
    attempt = 0
    while True:
        attempt += 1
        failure: BackchannelError
        request = build(deadline.remaining())
        try:
            response = yield from _send(request)
        except httpx.TransportError as exc:
            failure = _transport_error(exc)
            failure.__cause__ = exc
            if not _can_retry(exc):
                logger.error("%s: %s", _target(request, broker), failure)
                raise failure from exc
            pause = policy.pause(attempt)
        else:
            if response.is_success:
                return response
            failure = error_from_response(response)
            if not failure.retryable:
                log_refusal(request, failure, broker)
                raise failure
            pause = retry_after(response) or policy.pause(attempt)
        if attempt >= policy.attempts or pause >= deadline.remaining():
            logger.warning(
                "%s: giving up after %d %s: %s",
                _target(request, broker),
                attempt,
                "try" if attempt == 1 else "tries",
                failure,
            )
            raise failure
        logger.debug("%s: %s; trying again in %.2f s", _target(request, broker), failure, pause)
        yield from _pause(pause)


def _json(response: httpx.Response, parse: Callable[[Any], T]) -> T:
    try:
        return parse(response.json())
    except (KeyError, TypeError, ValueError) as exc:
        failure = UnexpectedResponse(
            f"the broker's answer does not follow the contract ({type(exc).__name__}: {exc})",
            status=response.status_code,
        )
        request = response.request
        logger.error(
            "%s %s: %s (is this the broker's URL?)",
            request.method,
            public_url(str(request.url)),
            failure,
        )
        raise failure from exc


def _encode(body: Mapping[str, Json]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _wait_params(seconds: float) -> dict[str, str]:
    """The ``wait`` query for up to ``seconds`` (none for 0), in milliseconds."""
    millis = int(seconds * 1000)
    return {"wait": f"{millis / 1000:.3f}"} if millis > 0 else {}


def job_id(job: int | Job) -> int:
    """The id of a job or of an id, checked to be a positive integer."""
    value = job.id if isinstance(job, Job) else job
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a job id is a positive integer")
    return value


class Operations:
    """The plans of every client operation, for one set of options, one
    channel (and the sealer, if the client seals)."""

    def __init__(
        self,
        options: Options,
        sealer: Sealer | None = None,
        broker: str = "",
        channel: str | None = None,
    ) -> None:
        self.options = options
        #: The channel that submits, ``listener`` and ``stats`` go to
        #: (``"default"``: the paths without a channel).
        self.channel = check_channel(channel)
        if sealer is not None and sealer.channel not in (DEFAULT_CHANNEL, self.channel):
            # The sealer's own channel is only a default: a client on another
            # channel seals for its own, but two explicit names that differ
            # are a mistake, which the agent would refuse job by job.
            raise ValueError(
                f"the sealer was made for channel {sealer.channel!r} and the client "
                f"submits on {self.channel!r}: give the client channel={sealer.channel!r}, "
                "or leave the sealer's channel unset"
            )
        self.sealer = sealer
        #: The broker's URL as the log records show it (:func:`public_url`).
        self.broker = broker

    def _sealer(self) -> Sealer:
        if self.sealer is None:
            raise ValueError("this client has no sealer: Client(..., sealer=Sealer(...))")
        return self.sealer

    def deadline(self, seconds: float | None) -> Deadline:
        """The caller's deadline, ``seconds`` from now (the client's
        ``timeout`` when ``None``)."""
        return Deadline(self.options.timeout if seconds is None else seconds)

    # The wait rules -----------------------------------------------------------

    def _wait_for(self, until: float, deadline: Deadline) -> float:
        """Seconds to ask the broker to wait: up to ``until`` (monotonic), less
        the latency reserve, at most ``max_wait``, never past the deadline."""
        end = min(until, deadline.at)
        return max(0.0, min(self.options.max_wait, end - time.monotonic() - LATENCY_RESERVE))

    def _request(
        self, method: str, path: str, deadline: Deadline, *, content: bytes | None = None
    ) -> Plan[httpx.Response]:
        def build(left: float) -> Send:
            return Send(method, path, {}, content, timeout=left)

        return (yield from exchange(build, deadline, self.options.retry, self.broker))

    # Submitting and waiting ---------------------------------------------------

    def submit(
        self,
        kind: str,
        payload: Json,
        *,
        job_timeout: float | None,
        idempotency_key: str | None,
        until: float,
        deadline: Deadline,
    ) -> Plan[Job]:
        """``POST /v1/jobs`` (``/v1/channels/{ch}/jobs`` on a channel other
        than ``default``), waiting at the broker until ``until`` at most.

        ``job_timeout`` is the body's ``timeout``. Every retry carries the
        same idempotency key (one is made when the caller gives none), so a
        submit retried after a lost response answers with the job the first
        one stored.
        """
        if job_timeout is not None and not job_timeout > 0:
            raise ValueError("job_timeout must be more than 0 seconds")
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        body: dict[str, Json] = {"kind": kind, "payload": payload, "idempotency_key": key}
        if job_timeout is not None:
            body["timeout"] = job_timeout
        content = _encode(body)
        path = channel_path(self.channel, "jobs")

        def build(left: float) -> Send:
            params = _wait_params(self._wait_for(until, deadline))
            return Send("POST", path, params, content, timeout=left)

        response = yield from exchange(build, deadline, self.options.retry, self.broker)
        return _json(response, Job.from_json)

    def get(self, job: int | Job, *, until: float, deadline: Deadline) -> Plan[Job]:
        """``GET /v1/jobs/{id}``, waiting at the broker until ``until`` at most."""
        path = f"v1/jobs/{job_id(job)}"

        def build(left: float) -> Send:
            return Send("GET", path, _wait_params(self._wait_for(until, deadline)), None, left)

        response = yield from exchange(build, deadline, self.options.retry, self.broker)
        return _json(response, Job.from_json)

    def read(self, job: int | Job) -> Plan[Job]:
        """:meth:`Client.get`: the job now, without waiting."""
        return (yield from self.get(job, until=0.0, deadline=self.deadline(None)))

    def follow(self, job: Job, *, until: float, deadline: Deadline) -> Plan[Job]:
        """Wait for ``job`` to end, until ``until`` (monotonic) at the latest.

        Returns the job, terminal or as last seen when the time ran out (also
        when the broker could not be reached in the last moments: the caller
        asked for an answer by then, and has none). A broker that answers
        ``202`` well before the wait asked for (e.g. an instance shutting down)
        is asked again after a short pause, not in a tight loop.
        """
        early = 0
        while not job.is_terminal:
            asked = self._wait_for(until, deadline)
            if asked <= 0:
                break
            started = time.monotonic()
            try:
                job = yield from self.get(job, until=until, deadline=deadline)
            except BackchannelError as exc:
                if exc.retryable and until - time.monotonic() <= LATENCY_RESERVE:
                    break
                raise
            if not job.is_terminal and time.monotonic() - started < asked / 2:
                early += 1
                pause = min(self.options.retry.pause(early), max(0.0, until - time.monotonic()))
                yield from _pause(pause)
            else:
                early = 0
        return job

    def submit_and_follow(
        self,
        kind: str,
        payload: Json,
        *,
        job_timeout: float | None,
        wait: float,
        idempotency_key: str | None,
    ) -> Plan[Job]:
        """:meth:`Client.submit`: the job after up to ``wait`` seconds.

        Retries run within ``max(wait, client timeout)``.
        """
        if self.sealer is not None:
            # A plain submit from a sealing client would send the payload in
            # clear, or seal it with no handle to open the answer: neither.
            raise ValueError(
                "this client seals: submit with submit_sealed(), which returns the "
                "handle that opens the answer"
            )
        if wait < 0:
            raise ValueError("wait must be 0 or more seconds")
        deadline = Deadline(max(wait, self.options.timeout))
        until = time.monotonic() + wait
        job = yield from self.submit(
            kind,
            payload,
            job_timeout=job_timeout,
            idempotency_key=idempotency_key,
            until=until,
            deadline=deadline,
        )
        return (yield from self.follow(job, until=until, deadline=deadline))

    def submit_sealed(
        self, kind: str, payload: Json, *, job_timeout: float | None, wait: float
    ) -> Plan[SealedJob]:
        """:meth:`Client.submit_sealed`: seal, submit with ``ref`` as the
        idempotency key, wait up to ``wait``; the job and its bound handle."""
        sealer = self._sealer()
        if wait < 0:
            raise ValueError("wait must be 0 or more seconds")
        sealed = sealer.seal(
            kind,
            payload,
            job_timeout=DEFAULT_JOB_TIMEOUT if job_timeout is None else job_timeout,
            channel=self.channel,
        )
        deadline = Deadline(max(wait, self.options.timeout))
        until = time.monotonic() + wait
        job = yield from self.submit(
            kind,
            sealed.envelope,
            job_timeout=sealed.job_timeout,
            idempotency_key=sealed.ref,
            until=until,
            deadline=deadline,
        )
        job = yield from self.follow(job, until=until, deadline=deadline)
        return SealedJob(job=job, handle=sealed.handle.for_job(job.id))

    def fetch(self, handle: AnswerHandle, wait: float | None) -> Plan[Json]:
        """:meth:`Client.fetch`: wait for the handle's job, open its answer."""
        if handle.job is None:
            raise ValueError("this handle was never submitted (it has no job id)")
        job = yield from self.wait(handle.job, wait)
        return handle.open(job)

    def wait(self, job: int | Job, wait: float | None) -> Plan[Job]:
        """:meth:`Client.wait`: the terminal job, or :class:`JobStillOpen`."""
        deadline = self.deadline(wait)
        if isinstance(job, Job):
            current = job
        else:
            current = yield from self.get(job, until=deadline.at, deadline=deadline)
        current = yield from self.follow(current, until=deadline.at, deadline=deadline)
        if not current.is_terminal:
            raise JobStillOpen(current)
        return current

    def call(
        self,
        kind: str,
        payload: Json,
        *,
        wait: float | None,
        job_timeout: float | None,
        idempotency_key: str | None,
    ) -> Plan[Json]:
        """:meth:`Client.call`: submit, wait until the deadline, return the result.

        With a sealer: the payload is sealed (``exp`` bound to the job's
        timeout), ``ref`` is the idempotency key, and the answer is opened.
        """
        deadline = self.deadline(wait)
        if job_timeout is None:
            seconds = deadline.remaining()
            job_timeout = max(seconds - EXPIRY_MARGIN, seconds / 2)
        handle: AnswerHandle | None = None
        if self.sealer is not None:
            if idempotency_key is not None:
                raise ValueError("a sealed call's idempotency key is its ref: give none")
            sealed = self.sealer.seal(kind, payload, job_timeout=job_timeout, channel=self.channel)
            payload, idempotency_key, handle = sealed.envelope, sealed.ref, sealed.handle
        job = yield from self.submit(
            kind,
            payload,
            job_timeout=job_timeout,
            idempotency_key=idempotency_key,
            until=deadline.at,
            deadline=deadline,
        )
        job = yield from self.follow(job, until=deadline.at, deadline=deadline)
        if handle is not None:
            return handle.for_job(job.id).open(job)
        return outcome(job)

    # The rest -----------------------------------------------------------------

    def cancel(self, job: int | Job) -> Plan[Job]:
        """``DELETE /v1/jobs/{id}``.

        A job that is already ``cancelled`` counts as success (the caller's aim
        is met, and a retried cancel whose first response was lost sees
        exactly that); any other terminal state is :class:`AlreadyTerminal`.
        """
        deadline = self.deadline(None)
        try:
            response = yield from self._request("DELETE", f"v1/jobs/{job_id(job)}", deadline)
        except AlreadyTerminal as exc:
            if exc.job is not None and exc.job.state is JobState.CANCELLED:
                return exc.job
            raise
        return _json(response, Job.from_json)

    def answer(self, job: int | Job, *, result: Json, error: Json) -> Plan[Job]:
        """``POST /v1/jobs/{id}/result`` (listener token); replays are safe.
        ``error`` when it is not ``None``, else ``result``."""
        if error is not None and result is not None:
            raise ValueError("give a result or an error, not both")
        body = {"error": error} if error is not None else {"result": result}
        path = f"v1/jobs/{job_id(job)}/result"
        response = yield from self._request(
            "POST", path, self.deadline(None), content=_encode(body)
        )
        return _json(response, Job.from_json)

    def listener(self) -> Plan[Listener]:
        """``GET /v1/listener`` (``/v1/channels/{ch}/listener``): the channel's stream."""
        path = channel_path(self.channel, "listener")
        response = yield from self._request("GET", path, self.deadline(None))
        return _json(response, Listener.from_json)

    def stats(self) -> Plan[Stats]:
        """``GET /v1/stats`` (``/v1/channels/{ch}/stats``): the channel's jobs."""
        path = channel_path(self.channel, "stats")
        response = yield from self._request("GET", path, self.deadline(None))
        return _json(response, Stats.from_json)


def outcome(job: Job) -> Json:
    """The result of a ``done`` job; the matching :class:`JobNotDone` otherwise."""
    if job.state is JobState.DONE:
        return job.result
    if job.state is JobState.FAILED:
        raise JobFailed(job)
    if job.state is JobState.EXPIRED:
        raise JobExpired(job)
    if job.state is JobState.CANCELLED:
        raise JobCancelled(job)
    raise JobStillOpen(job)
