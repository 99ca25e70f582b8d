"""The asyncio client: the same operations as :class:`backchannel.Client`."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TypeVar, cast

import httpx

from ._base import ClientBase, Verify, tls
from ._deprecated import renamed
from ._plan import Pause, Plan, RetryPolicy
from .models import Job, Json, Listener, Stats
from .sealed import AnswerHandle, SealedJob, Sealer

T = TypeVar("T")


class AsyncClient(ClientBase):
    """The asyncio twin of :class:`backchannel.Client`: same arguments, same
    methods (awaitable), same rules. Use it within one event loop.

    ``base_url`` is the broker's URL (a path prefix is kept); ``token`` a
    submitter token (a listener token for :meth:`answer`). ``timeout`` is the
    default deadline of one operation in seconds: no method runs longer,
    retries included, unless told otherwise (a ``wait`` given to a method).
    ``max_wait`` is the longest single waiting request (longer waits
    are a series of them; keep it under the read timeout of any proxy in
    front of the broker). ``transport`` is passed to ``httpx.Client``; ``verify`` is
    ``True``, ``False``, a CA bundle path or an ``ssl.SSLContext``. ``sealer``
    seals :meth:`call` and :meth:`submit_sealed` (see :mod:`backchannel.sealed`).
    ``channel`` is the channel submits go to and whose listener and stats are
    read (``None`` or ``"default"``: the default channel).

    Use it as an async context manager, or await :meth:`aclose`.
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(
            transport=transport, verify=tls(verify), **self._httpx_args()
        )

    async def _run(self, plan: Plan[T]) -> T:
        """Drive a plan with asyncio I/O."""
        reply: httpx.Response | None = None
        failure: httpx.TransportError | None = None
        while True:
            try:
                step = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as stop:
                return cast(T, stop.value)
            reply, failure = None, None
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                continue
            try:
                reply = await self._http.request(step.method, step.path, **self._request_args(step))
            except httpx.TransportError as exc:
                failure = exc

    async def submit(
        self,
        kind: str,
        payload: Json = None,
        *,
        job_timeout: float | None = None,
        wait: float = 0,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Like :meth:`backchannel.Client.submit`."""
        job_timeout = renamed("AsyncClient.submit", "timeout", "job_timeout", timeout, job_timeout)
        return await self._run(
            self._ops.submit_and_follow(
                kind, payload, job_timeout=job_timeout, wait=wait, idempotency_key=idempotency_key
            )
        )

    async def submit_sealed(
        self,
        kind: str,
        payload: Json = None,
        *,
        job_timeout: float | None = None,
        wait: float = 0,
        timeout: float | None = None,
    ) -> SealedJob:
        """Like :meth:`backchannel.Client.submit_sealed`."""
        job_timeout = renamed(
            "AsyncClient.submit_sealed", "timeout", "job_timeout", timeout, job_timeout
        )
        return await self._run(
            self._ops.submit_sealed(kind, payload, job_timeout=job_timeout, wait=wait)
        )

    async def fetch(
        self, handle: AnswerHandle, wait: float | None = None, *, timeout: float | None = None
    ) -> Json:
        """Like :meth:`backchannel.Client.fetch`."""
        wait = renamed("AsyncClient.fetch", "timeout", "wait", timeout, wait)
        return await self._run(self._ops.fetch(handle, wait))

    async def get(self, job: int | Job) -> Job:
        """Like :meth:`backchannel.Client.get`."""
        return await self._run(self._ops.read(job))

    async def wait(
        self, job: int | Job, wait: float | None = None, *, timeout: float | None = None
    ) -> Job:
        """Like :meth:`backchannel.Client.wait`."""
        wait = renamed("AsyncClient.wait", "timeout", "wait", timeout, wait)
        return await self._run(self._ops.wait(job, wait))

    async def call(
        self,
        kind: str,
        payload: Json = None,
        wait: float | None = None,
        *,
        job_timeout: float | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Json:
        """Like :meth:`backchannel.Client.call` (without holding a thread
        while it waits)."""
        wait = renamed("AsyncClient.call", "timeout", "wait", timeout, wait)
        return await self._run(
            self._ops.call(
                kind,
                payload,
                wait=wait,
                job_timeout=job_timeout,
                idempotency_key=idempotency_key,
            )
        )

    async def cancel(self, job: int | Job) -> Job:
        """Like :meth:`backchannel.Client.cancel`."""
        return await self._run(self._ops.cancel(job))

    async def answer(self, job: int | Job, *, result: Json = None, error: Json = None) -> Job:
        """Like :meth:`backchannel.Client.answer`."""
        return await self._run(self._ops.answer(job, result=result, error=error))

    async def listener(self) -> Listener:
        """Like :meth:`backchannel.Client.listener`."""
        return await self._run(self._ops.listener())

    async def stats(self) -> Stats:
        """Like :meth:`backchannel.Client.stats`."""
        return await self._run(self._ops.stats())

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
