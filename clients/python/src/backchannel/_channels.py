"""Channel names and the paths of the routes that have a channel (issue 24).

A broker cluster serves several listeners, one per *channel*; ``default``
always exists and is what the paths without a channel (``/v1/jobs``,
``/v1/listener``, ``/v1/stats``) mean. The routes by job id carry no channel.
"""

from __future__ import annotations

import re

#: The channel of the paths without one, and of a client given none.
DEFAULT_CHANNEL = "default"

#: A channel's name: a lowercase DNS label, 1 to 63 characters.
CHANNEL_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

#: Where each operation with a channel goes: on ``default``, and on another channel.
_PATHS = {
    "jobs": ("v1/jobs", "v1/channels/{}/jobs"),
    "listener": ("v1/listener", "v1/channels/{}/listener"),
    "stats": ("v1/stats", "v1/channels/{}/stats"),
}

#: What every channel route starts with (relative to the base URL).
CHANNEL_ROUTES = "v1/channels/"


def check_channel(channel: object, what: str = "channel") -> str:
    """The channel's name, checked (``ValueError`` otherwise); ``None`` is
    ``"default"``."""
    if channel is None:
        return DEFAULT_CHANNEL
    if not isinstance(channel, str) or not CHANNEL_NAME.fullmatch(channel):
        raise ValueError(
            f"{what} must be a channel name: 1 to 63 lowercase letters, digits and inner "
            f"hyphens (a DNS label, e.g. 'site-a'), or None for 'default'; got {channel!r}"
        )
    return channel


def channel_path(channel: str, route: str) -> str:
    """The path (relative to the base URL) of ``route`` (``"jobs"``,
    ``"listener"`` or ``"stats"``) on ``channel``: the old path for
    ``default``, so that a client without a channel sends what it always did."""
    plain, named = _PATHS[route]
    return plain if channel == DEFAULT_CHANNEL else named.format(channel)
