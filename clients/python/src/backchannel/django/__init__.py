"""Django integration for the submitter side (e.g. the scheduler).

Configure ``settings.BACKCHANNEL`` (see :mod:`backchannel.django.conf`), then::

    from backchannel.django import get_client

    result = get_client().call("invitation.lookup", {"token": token}, wait=5)

Add ``"backchannel.django"`` to ``INSTALLED_APPS`` for the settings check, the
deploy check (``manage.py check --deploy``: broker reachable, listener
connected) and ``manage.py backchannel_status``. With ``BACKCHANNEL["SEAL"]``
every client built here seals its calls (:mod:`backchannel.sealed`); with
``BACKCHANNEL["CHANNEL"]`` every one submits on that channel (and the checks
ask about that channel's listener).

Importing this package needs Django; the rest of ``backchannel`` does not.
The castellum side is :mod:`backchannel.django.castellum`.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import AsyncClient, Client
from .conf import SchedulerConfig, on_change, scheduler_config

__all__ = ["async_client", "get_client", "scheduler_client"]

_lock = threading.Lock()
_client: Client | None = None


def _options(config: SchedulerConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "timeout": config.timeout,
        "max_wait": config.max_wait,
        "verify": config.verify,
        "channel": config.channel,
        "sealer": config.sealer,
        **overrides,
    }


def scheduler_client(**overrides: Any) -> Client:
    """A new :class:`Client` from ``settings.BACKCHANNEL``; ``overrides`` are
    passed to it (e.g. ``timeout``, ``retry``). The caller closes it."""
    config = scheduler_config()
    return Client(config.url, config.token, **_options(config, overrides))


def async_client(**overrides: Any) -> AsyncClient:
    """A new :class:`AsyncClient` from ``settings.BACKCHANNEL``, for async
    views: ``async with async_client() as client: ...``.

    Not cached: an asyncio client belongs to one event loop, and Django may
    run async views on several (a new one per request under WSGI). Under ASGI
    a project may keep one per loop itself.
    """
    config = scheduler_config()
    return AsyncClient(config.url, config.token, **_options(config, overrides))


def get_client() -> Client:
    """The process's shared :class:`Client`, built from the settings on first
    use (thread-safe; the client is safe to share between threads)."""
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = scheduler_client()
            client = _client
    return client


@on_change
def _forget_client() -> None:
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None:
        old.close()
