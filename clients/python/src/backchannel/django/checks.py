"""Django system checks (tag ``backchannel``).

* ``backchannel.E001`` (every run): ``settings.BACKCHANNEL`` is wrong.
* ``backchannel.E002`` (every run): ``settings.BACKCHANNEL_CASTELLUM`` is wrong.
* ``backchannel.W001`` (every run): neither is set.
* ``backchannel.E003`` (``check --deploy``): the broker is unreachable or
  refuses the token.
* ``backchannel.W002`` (``check --deploy``): no listener holds the stream, so
  jobs will wait until ``backchannel agent`` connects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from .conf import (
    CASTELLUM_SETTING,
    SCHEDULER_SETTING,
    castellum_config,
    is_configured,
    scheduler_config,
)
from .status import probe


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The settings can be read (files included); no network."""
    messages: list[CheckMessage] = []
    for setting, read, check_id in (
        (SCHEDULER_SETTING, scheduler_config, "backchannel.E001"),
        (CASTELLUM_SETTING, castellum_config, "backchannel.E002"),
    ):
        if is_configured(setting):
            try:
                read()
            except ImproperlyConfigured as exc:
                messages.append(Error(str(exc), id=check_id))
    if not (is_configured(SCHEDULER_SETTING) or is_configured(CASTELLUM_SETTING)):
        messages.append(
            Warning(
                f"backchannel.django is installed but neither settings.{SCHEDULER_SETTING} "
                f"nor settings.{CASTELLUM_SETTING} is set",
                id="backchannel.W001",
            )
        )
    return messages


def check_broker(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The broker answers with our token, and a listener holds the stream."""
    if not is_configured(SCHEDULER_SETTING):
        return []
    try:
        status = probe()
    except ImproperlyConfigured:
        return []  # check_settings reports it
    if status.error is not None:
        return [
            Error(
                f"the broker at {status.url} cannot be used: {status.error}",
                hint="Is it running and reachable from here, and is the token a submitter token?",
                id="backchannel.E003",
            )
        ]
    if not status.ok:
        return [
            Warning(
                f"no listener holds the stream of the broker at {status.url}",
                hint="Jobs wait until `backchannel agent` connects on the listener's side.",
                id="backchannel.W002",
            )
        ]
    return []
