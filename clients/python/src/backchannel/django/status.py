"""Is the broker reachable, and does a listener hold the stream?

Shared by the deploy check and ``manage.py backchannel_status``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import BackchannelError, Client, Listener, RetryPolicy, Stats
from .._channels import DEFAULT_CHANNEL
from . import scheduler_client

#: Seconds a status probe may take, retries included.
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class BrokerStatus:
    """What a probe found."""

    url: str
    listener: Listener | None = None
    stats: Stats | None = None
    error: BackchannelError | None = None
    #: The channel whose listener and stats were asked for.
    channel: str = DEFAULT_CHANNEL

    @property
    def reachable(self) -> bool:
        """The broker answered with the configured token."""
        return self.error is None

    @property
    def stream(self) -> str:
        """The stream asked about, as the messages name it: ``its stream``, or
        ``the stream of channel site-b``."""
        return (
            "its stream"
            if self.channel == DEFAULT_CHANNEL
            else f"the stream of channel {self.channel}"
        )

    @property
    def ok(self) -> bool:
        """Reachable, and a listener holds the stream."""
        return self.listener is not None and self.listener.held


def probe(client: Client | None = None, timeout: float = PROBE_TIMEOUT) -> BrokerStatus:
    """Ask the broker who holds the stream and how many jobs it has, with a
    client of its own (short timeout, few retries) unless one is given.

    Raises ``ImproperlyConfigured`` when ``settings.BACKCHANNEL`` is wrong.
    """
    own = client is None
    if client is None:
        client = scheduler_client(timeout=timeout, retry=RetryPolicy(attempts=3))
    try:
        listener = client.listener()
        stats = client.stats()
    except BackchannelError as exc:
        return BrokerStatus(url=client.base_url, channel=client.channel, error=exc)
    finally:
        if own:
            client.close()
    return BrokerStatus(url=client.base_url, channel=client.channel, listener=listener, stats=stats)
