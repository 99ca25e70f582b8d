"""The blocking client."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TypeVar, cast

import httpx

from ._base import ClientBase, Verify, tls
from ._deprecated import renamed
from ._plan import Pause, Plan, RetryPolicy
from .models import Job, Json, Listener, Stats
from .sealed import AnswerHandle, SealedJob, Sealer

T = TypeVar("T")


class Client(ClientBase):
    """A blocking client of the broker; safe to share between threads.

    ``base_url`` is the broker's URL (a path prefix is kept); ``token`` a
    submitter token (a listener token for :meth:`answer`). ``timeout`` is the
    default deadline of one operation in seconds: no method runs longer,
    retries included, unless told otherwise (a ``wait`` given to a method).
    ``max_wait`` is the longest single waiting request (longer waits
    are a series of them; keep it under the read timeout of any proxy in
    front of the broker). ``transport`` is passed to ``httpx.Client``; ``verify`` is
    ``True``, ``False``, a CA bundle path or an ``ssl.SSLContext``. ``sealer``
    (a :class:`~backchannel.sealed.Sealer`) seals :meth:`call` and
    :meth:`submit_sealed` end to end; :meth:`submit` then refuses, since it
    could not open the answer. ``channel`` (a channel name, e.g. ``"site-b"``;
    ``None`` or ``"default"`` for the default channel) is where :meth:`submit`,
    :meth:`call` and :meth:`submit_sealed` post (``/v1/channels/{ch}/jobs``),
    whose :meth:`listener` and :meth:`stats` are read, and what sealed
    requests name as their channel; the methods by job id have no channel.
    A name that is not a channel name is a ``ValueError``.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_wait: float = 50.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: Verify = True,
        sealer: Sealer | None = None,
        channel: str | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            timeout=timeout,
            max_wait=max_wait,
            connect_timeout=connect_timeout,
            retry=retry,
            sealer=sealer,
            channel=channel,
        )
        self._http = httpx.Client(transport=transport, verify=tls(verify), **self._httpx_args())

    def _run(self, plan: Plan[T]) -> T:
        """Drive a plan with blocking I/O."""
        reply: httpx.Response | None = None
        failure: httpx.TransportError | None = None
        while True:
            try:
                step = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as stop:
                return cast(T, stop.value)
            reply, failure = None, None
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                continue
            try:
                reply = self._http.request(step.method, step.path, **self._request_args(step))
            except httpx.TransportError as exc:
                failure = exc

    def submit(
        self,
        kind: str,
        payload: Json = None,
        *,
        job_timeout: float | None = None,
        wait: float = 0,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Submit a job and return it, after waiting up to ``wait`` seconds for
        it to end (it may still be open: check :attr:`Job.is_terminal`).

        ``job_timeout`` is the job's own timeout at the broker (its deadline is
        now + job_timeout; the broker's default when ``None``). Network errors
        and ``503`` are retried within ``max(wait, client timeout)`` with the
        same ``idempotency_key`` (a random one when ``None``), so a retry never
        creates a second job. ``timeout`` is the deprecated name of
        ``job_timeout``.
        """
        job_timeout = renamed("Client.submit", "timeout", "job_timeout", timeout, job_timeout)
        return self._run(
            self._ops.submit_and_follow(
                kind, payload, job_timeout=job_timeout, wait=wait, idempotency_key=idempotency_key
            )
        )

    def submit_sealed(
        self,
        kind: str,
        payload: Json = None,
        *,
        job_timeout: float | None = None,
        wait: float = 0,
        timeout: float | None = None,
    ) -> SealedJob:
        """Seal ``payload`` with the client's sealer, submit it and return the
        :class:`SealedJob`: the job after waiting up to ``wait`` seconds, and
        the handle that opens its answer (:meth:`fetch`, or
        ``SealedJob.open()`` once the job has ended).

        ``job_timeout`` is the job's own timeout, 30 s when ``None`` (always
        sent: the sealed request's ``exp`` is bound to it). The request's
        ``ref`` is the idempotency key, so a retried submit never creates a
        second job. The handle is secret material (see :class:`AnswerHandle`).
        ``timeout`` is the deprecated name of ``job_timeout``.
        """
        job_timeout = renamed(
            "Client.submit_sealed", "timeout", "job_timeout", timeout, job_timeout
        )
        return self._run(self._ops.submit_sealed(kind, payload, job_timeout=job_timeout, wait=wait))

    def fetch(
        self, handle: AnswerHandle, wait: float | None = None, *, timeout: float | None = None
    ) -> Json:
        """Wait up to ``wait`` seconds (the client's ``timeout`` when ``None``)
        for the job of ``handle`` (from :meth:`submit_sealed`, possibly
        reloaded with :meth:`AnswerHandle.loads`) and return its opened
        result, or raise as :meth:`call` does. Needs no sealer: the handle
        holds all it takes. ``timeout`` is the deprecated name of ``wait``."""
        wait = renamed("Client.fetch", "timeout", "wait", timeout, wait)
        return self._run(self._ops.fetch(handle, wait))

    def get(self, job: int | Job) -> Job:
        """The job as the broker has it now."""
        return self._run(self._ops.read(job))

    def wait(
        self, job: int | Job, wait: float | None = None, *, timeout: float | None = None
    ) -> Job:
        """Wait up to ``wait`` seconds (the client's ``timeout`` when ``None``)
        for the job to end and return it, whatever its terminal state; raise
        :class:`JobStillOpen` if it has not ended by then. ``timeout`` is the
        deprecated name of ``wait``."""
        wait = renamed("Client.wait", "timeout", "wait", timeout, wait)
        return self._run(self._ops.wait(job, wait))

    def call(
        self,
        kind: str,
        payload: Json = None,
        wait: float | None = None,
        *,
        job_timeout: float | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Json:
        """Submit a job, wait for it and return its result.

        Raises :class:`JobFailed`, :class:`JobExpired` or
        :class:`JobCancelled` when it ends otherwise than ``done``, and
        :class:`JobStillOpen` when it is still open at the caller's deadline,
        ``wait`` seconds from now (the client's ``timeout`` when ``None``);
        this method never returns later than that. The job's own timeout is
        ``job_timeout``, by default a moment shorter than ``wait`` so that the
        broker drops a job nobody waits for any more. ``timeout`` is the
        deprecated name of ``wait``.

        A blocking call holds its thread (a WSGI worker, in a web
        application) for up to ``wait`` seconds: see the README.
        """
        wait = renamed("Client.call", "timeout", "wait", timeout, wait)
        return self._run(
            self._ops.call(
                kind,
                payload,
                wait=wait,
                job_timeout=job_timeout,
                idempotency_key=idempotency_key,
            )
        )

    def cancel(self, job: int | Job) -> Job:
        """Cancel an open job and return it, now ``cancelled`` (also if it
        already was). Raises :class:`AlreadyTerminal` if it ended otherwise."""
        return self._run(self._ops.cancel(job))

    def answer(self, job: int | Job, *, result: Json = None, error: Json = None) -> Job:
        """Answer a job with a ``result`` or an ``error`` (not both): the
        listener's side, for a listener token. Without either, the result is
        ``null``."""
        return self._run(self._ops.answer(job, result=result, error=error))

    def listener(self) -> Listener:
        """Whether a listener holds the client's channel's stream, which one
        and since when."""
        return self._run(self._ops.listener())

    def stats(self) -> Stats:
        """Jobs by state and the age of the oldest pending one, on the
        client's channel."""
        return self._run(self._ops.stats())

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
