"""Django system checks (tag ``backchannel``).

* ``backchannel.E001`` (every run): ``settings.BACKCHANNEL`` is wrong.
* ``backchannel.E002`` (every run): ``settings.BACKCHANNEL_CASTELLUM`` is wrong.
* ``backchannel.W001`` (every run): neither is set.
* ``backchannel.W003`` (every run): the signing key of ``BACKCHANNEL["SEAL"]``
  is readable by its group or by others. (Missing, unreadable or wrong key
  files are ``backchannel.E001``.)
* ``backchannel.E003`` (``check --deploy``): the broker is unreachable or
  refuses the token.
* ``backchannel.W002`` (``check --deploy``): no listener holds the stream, so
  jobs will wait until ``backchannel agent`` connects.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from .._channels import DEFAULT_CHANNEL
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
                config = read()
            except ImproperlyConfigured as exc:
                messages.append(Error(str(exc), id=check_id))
                continue
            signing_key = getattr(config, "signing_key_file", None)
            if signing_key is not None:
                messages.extend(_check_private_key(signing_key))
    if not (is_configured(SCHEDULER_SETTING) or is_configured(CASTELLUM_SETTING)):
        messages.append(
            Warning(
                f"backchannel.django is installed but neither settings.{SCHEDULER_SETTING} "
                f"nor settings.{CASTELLUM_SETTING} is set",
                id="backchannel.W001",
            )
        )
    return messages


def _check_private_key(path: str) -> list[CheckMessage]:
    """A warning when a private key file is readable by its group or others."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return []  # it was read a moment ago; a race is not worth a message
    readers = [
        who for bit, who in ((stat.S_IRGRP, "its group"), (stat.S_IROTH, "others")) if mode & bit
    ]
    if not readers:
        return []
    return [
        Warning(
            f"the signing key {path} of settings.{SCHEDULER_SETTING}['SEAL'] is readable by "
            f"{' and '.join(readers)} (mode {mode:04o})",
            hint=f"Whoever reads it can sign jobs that castellum runs: chmod 600 {path}",
            id="backchannel.W003",
        )
    ]


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
                f"no listener holds the stream of the broker at {status.url}"
                + ("" if status.channel == DEFAULT_CHANNEL else f" on channel {status.channel}"),
                hint="Jobs wait until `backchannel agent` connects on the listener's side.",
                id="backchannel.W002",
            )
        ]
    return []
