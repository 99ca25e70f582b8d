"""Reading the Django settings of both sides.

The scheduler (the submitter)::

    BACKCHANNEL = {
        "URL": "https://backchannel.example.org",
        "TOKEN_FILE": "/etc/scheduler/backchannel-token",   # or "TOKEN": "..."
        "TIMEOUT": 10,          # seconds: how long a call waits by default (30)
        "MAX_WAIT": 50,         # seconds, the longest single waiting request (50)
        "VERIFY": True,         # TLS verification: True, False or a CA bundle path
        "CHANNEL": "site-b",    # optional: the channel to submit on ("default")
        "SEAL": {               # optional: seal every call end to end (sealed/v1)
            "SIGNING_KEY_FILE": "/etc/scheduler/seal-signing.key",   # Ed25519 private key
            "RECIPIENT_FILES": ["/etc/scheduler/castellum.pub"],      # X25519 public keys
            # "CHANNEL": the older place of the header's channel; if given, it
            # must equal CHANNEL above (the sealer seals for the clients' channel)
        },
    }

Castellum (the handlers behind ``backchannel agent``)::

    BACKCHANNEL_CASTELLUM = {
        "SECRET_FILE": "/etc/castellum/backchannel-secret",  # or "SECRET": "..."
        "HEADER": "X-Backchannel-Secret",                    # the agent's --forward-header
    }

Both are read once and cached; a change through ``override_settings`` (tests)
clears the cache. Errors raise ``ImproperlyConfigured`` naming the setting and
the file, never a token or secret.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .._channels import DEFAULT_CHANNEL, check_channel
from ..handlers import DEFAULT_SECRET_HEADER
from ..sealed import KeyFileError, Sealer

SCHEDULER_SETTING = "BACKCHANNEL"
CASTELLUM_SETTING = "BACKCHANNEL_CASTELLUM"


@dataclass(frozen=True)
class SchedulerConfig:
    """``settings.BACKCHANNEL``, checked."""

    url: str
    token: str = field(repr=False)
    timeout: float = 30.0
    max_wait: float = 50.0
    verify: bool | str = True
    #: ``SEAL``, read: the sealer every client of the settings seals with.
    sealer: Sealer | None = field(default=None, repr=False)
    #: The path of the signing key (for the permission check).
    signing_key_file: str | None = None
    #: ``CHANNEL``: the channel the clients submit on (``"default"``).
    channel: str = DEFAULT_CHANNEL


@dataclass(frozen=True)
class CastellumConfig:
    """``settings.BACKCHANNEL_CASTELLUM``, checked."""

    secret: str = field(repr=False)
    header: str = DEFAULT_SECRET_HEADER


def is_configured(setting: str) -> bool:
    """Whether the project has this setting at all."""
    return getattr(settings, setting, None) is not None


def _section(setting: str, known: set[str]) -> Mapping[str, Any]:
    value = getattr(settings, setting, None)
    if value is None:
        raise ImproperlyConfigured(f"settings.{setting} is not set")
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.{setting} must be a dict")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.{setting} has unknown keys {unknown}; allowed: {sorted(known)}"
        )
    return value


def read_secret(
    setting: str, section: Mapping[str, Any], key: str, *, inner_spaces: bool = False
) -> str:
    """``section[key]`` or the content of the file ``section[key + "_FILE"]``
    (one line, surrounding blanks removed; spaces inside only if
    ``inner_spaces``, as the agent allows in its forwarded secret)."""
    file_key = f"{key}_FILE"
    value, path = section.get(key), section.get(file_key)
    if value is not None and path is not None:
        raise ImproperlyConfigured(f"settings.{setting}: give {key} or {file_key}, not both")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImproperlyConfigured(
                f"settings.{setting}[{file_key!r}]: cannot read {path}: {type(exc).__name__}"
            ) from None
        where = f"the file {path}"
    else:
        where = f"settings.{setting}[{key!r}]"
    if value is None:
        raise ImproperlyConfigured(f"settings.{setting}: {key} or {file_key} is required")
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"{where} is empty or not a string")
    if value != value.strip() or not value.replace(" ", "").isprintable():
        raise ImproperlyConfigured(f"{where} must hold one line of printable characters")
    if " " in value and not inner_spaces:
        raise ImproperlyConfigured(f"{where} must hold one word (no spaces)")
    return value


def _seconds(setting: str, section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ImproperlyConfigured(f"settings.{setting}[{key!r}] must be a number of seconds > 0")
    return float(value)


SEAL_KEYS = {"SIGNING_KEY_FILE", "RECIPIENT_FILES", "CHANNEL"}


def _channel(section: Mapping[str, Any]) -> str:
    """``BACKCHANNEL["CHANNEL"]``, checked against the name rule (``None`` or
    absent: ``"default"``)."""
    try:
        return check_channel(section.get("CHANNEL"), f"settings.{SCHEDULER_SETTING}['CHANNEL']")
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def _seal(section: Mapping[str, Any], channel: str) -> tuple[Sealer, str] | None:
    """``BACKCHANNEL["SEAL"]``: the sealer built from its key files (read now),
    sealing for ``channel`` (``BACKCHANNEL["CHANNEL"]``), and the signing
    key's path."""
    seal = section.get("SEAL")
    if seal is None:
        return None
    where = f"settings.{SCHEDULER_SETTING}['SEAL']"
    if not isinstance(seal, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict")
    unknown = sorted(set(seal) - SEAL_KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown keys {unknown}; allowed: {sorted(SEAL_KEYS)}"
        )
    signing = seal.get("SIGNING_KEY_FILE")
    if not isinstance(signing, str) or not signing:
        raise ImproperlyConfigured(
            f"{where}['SIGNING_KEY_FILE'] must be the path of the scheduler's Ed25519 private key"
        )
    recipients = seal.get("RECIPIENT_FILES")
    if (
        not isinstance(recipients, (list, tuple))
        or not recipients
        or not all(isinstance(path, str) and path for path in recipients)
    ):
        raise ImproperlyConfigured(
            f"{where}['RECIPIENT_FILES'] must be a list of paths of castellum's X25519 public "
            "keys (the first seals)"
        )
    if seal.get("CHANNEL") is not None:
        # The older place of the channel: it must name the client's channel,
        # since the header's ``ch`` is the channel the job is submitted on.
        try:
            named = check_channel(seal["CHANNEL"], f"{where}['CHANNEL']")
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        if named != channel:
            raise ImproperlyConfigured(
                f"{where}['CHANNEL'] is {named!r} but the clients submit on {channel!r} "
                f"(settings.{SCHEDULER_SETTING}['CHANNEL']): a sealed request names the "
                f"channel it is submitted on; set settings.{SCHEDULER_SETTING}['CHANNEL'] "
                f"only (the sealer takes it) and drop {where}['CHANNEL']"
            )
    try:
        sealer = Sealer(signing_key=signing, recipients=list(recipients), channel=channel)
    except (KeyFileError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None
    return sealer, signing


@functools.cache
def scheduler_config() -> SchedulerConfig:
    """``settings.BACKCHANNEL``, checked (cached); the ``SEAL`` key files are read here."""
    section = _section(
        SCHEDULER_SETTING,
        {"URL", "TOKEN", "TOKEN_FILE", "TIMEOUT", "MAX_WAIT", "VERIFY", "CHANNEL", "SEAL"},
    )
    url = section.get("URL")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"settings.{SCHEDULER_SETTING}['URL'] must be the broker's http(s):// URL"
        )
    verify = section.get("VERIFY", True)
    if not isinstance(verify, (bool, str)):
        raise ImproperlyConfigured(
            f"settings.{SCHEDULER_SETTING}['VERIFY'] must be True, False or a CA bundle path"
        )
    token = read_secret(SCHEDULER_SETTING, section, "TOKEN")
    channel = _channel(section)
    seal = _seal(section, channel)
    return SchedulerConfig(
        url=url,
        token=token,
        timeout=_seconds(SCHEDULER_SETTING, section, "TIMEOUT", 30.0),
        max_wait=_seconds(SCHEDULER_SETTING, section, "MAX_WAIT", 50.0),
        verify=verify,
        channel=channel,
        sealer=None if seal is None else seal[0],
        signing_key_file=None if seal is None else seal[1],
    )


@functools.cache
def castellum_config() -> CastellumConfig:
    """``settings.BACKCHANNEL_CASTELLUM``, checked (cached)."""
    section = _section(CASTELLUM_SETTING, {"SECRET", "SECRET_FILE", "HEADER"})
    header = section.get("HEADER", DEFAULT_SECRET_HEADER)
    if (
        not isinstance(header, str)
        or not header
        or not all(c.isalnum() or c in "-_" for c in header)
    ):
        raise ImproperlyConfigured(f"settings.{CASTELLUM_SETTING}['HEADER'] is not a header name")
    return CastellumConfig(
        secret=read_secret(CASTELLUM_SETTING, section, "SECRET", inner_spaces=True), header=header
    )


Reset = TypeVar("Reset", bound=Callable[[], None])
_resets: list[Callable[[], None]] = []


def on_change(reset: Reset) -> Reset:
    """Register a function to call when a backchannel setting changes."""
    _resets.append(reset)
    return reset


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SCHEDULER_SETTING, CASTELLUM_SETTING):
        scheduler_config.cache_clear()
        castellum_config.cache_clear()
        for reset in _resets:
            reset()


setting_changed.connect(_setting_changed, dispatch_uid="backchannel.django.conf")
