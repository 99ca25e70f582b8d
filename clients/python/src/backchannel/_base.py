"""What :class:`Client` and :class:`AsyncClient` share: configuration, headers
and turning a plan's :class:`Send` step into ``httpx`` arguments."""

from __future__ import annotations

import ssl
from typing import Any, Union

import httpx

from ._channels import DEFAULT_CHANNEL
from ._plan import Operations, Options, RetryPolicy, Send, public_url
from ._version import __version__
from .sealed import Sealer

#: Shortest timeout handed to httpx (it takes 0 as "no time at all").
_MIN_TIMEOUT = 0.001

#: TLS verification: on, off, a CA bundle file, or a context of one's own.
Verify = Union[bool, str, ssl.SSLContext]


def tls(verify: Verify) -> bool | ssl.SSLContext:
    """What httpx takes for ``verify`` (a CA bundle path becomes a context:
    httpx deprecates paths)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def check_token(token: str) -> str:
    """The token, if it can be sent in a header. Errors never quote it."""
    if not isinstance(token, str) or not token:
        raise ValueError("the token must be a non-empty string")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("the token must not contain spaces or control characters")
    return token


class ClientBase:
    """Configuration common to both clients."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        max_wait: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        sealer: Sealer | None,
        channel: str | None,
    ) -> None:
        if not str(base_url).startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be more than 0 seconds")
        if sealer is not None and not isinstance(sealer, Sealer):
            raise TypeError("sealer must be a backchannel.sealed.Sealer")
        self.base_url = str(base_url)
        self._ops = Operations(
            Options(timeout=timeout, max_wait=max_wait, retry=retry or RetryPolicy()),
            sealer,
            broker=public_url(self.base_url),
            channel=channel,
        )
        self._connect_timeout = connect_timeout
        # Kept only in the headers of the httpx client, which never shows them.
        self._auth_headers = {"Authorization": f"Bearer {check_token(token)}"}

    @property
    def sealer(self) -> Sealer | None:
        """The sealer of :meth:`call` and :meth:`submit_sealed`, if any."""
        return self._ops.sealer

    @property
    def channel(self) -> str:
        """The channel this client submits on and whose ``listener`` and
        ``stats`` it reads (``"default"`` when it was given none)."""
        return self._ops.channel

    @property
    def timeout(self) -> float:
        """The default deadline of one operation, in seconds."""
        return self._ops.options.timeout

    def _httpx_args(self) -> dict[str, Any]:
        """Arguments for the httpx client."""
        return {
            "base_url": self.base_url,
            "headers": {
                **self._auth_headers,
                "Accept": "application/json",
                "User-Agent": f"backchannel-client/{__version__}",
            },
            "follow_redirects": False,
        }

    def _request_args(self, step: Send) -> dict[str, Any]:
        """Arguments of ``httpx`` ``request()`` for one step: every phase of the
        request is bounded by the time left before the caller's deadline."""
        seconds = max(step.timeout, _MIN_TIMEOUT)
        args: dict[str, Any] = {
            "params": step.params,
            "timeout": httpx.Timeout(seconds, connect=min(self._connect_timeout, seconds)),
        }
        if step.content is not None:
            args["content"] = step.content
            args["headers"] = {"Content-Type": "application/json"}
        return args

    def __repr__(self) -> str:
        channel = "" if self.channel == DEFAULT_CHANNEL else f", channel={self.channel!r}"
        return f"{type(self).__name__}({self.base_url!r}{channel})"
