"""``manage.py backchannel_status``: is the broker reachable, is a listener connected?

The first line is the verdict, one line a person or a probe reads at a
glance (``ok: ...``, ``no listener: ...``, ``unusable: ...``); the lines after
it are the details (the broker, the listener, the job counts, the sealing
keys). Exit status 0 when a listener holds the stream, 1 when the broker
answers but no listener holds the stream, 2 when the broker cannot be used
(unreachable, token refused, or the settings are wrong).

From the command line the command exits with that status and nothing else
(no ``CommandError:`` line, no traceback): a missing listener is a state to
report, not a crash. Through ``call_command`` it raises ``CommandError`` with
that ``returncode``, as Django commands do.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backchannel._channels import DEFAULT_CHANNEL
from backchannel.django.conf import scheduler_config
from backchannel.django.status import PROBE_TIMEOUT, BrokerStatus, probe
from backchannel.models import JobState

OK = 0
NO_LISTENER = 1
UNUSABLE = 2


class Command(BaseCommand):
    help = "Say whether the backchannel broker is reachable and a listener holds the stream."
    # The command checks the settings itself and says so in its verdict (exit
    # 2); Django's system checks would stop it first with their own report.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=PROBE_TIMEOUT,
            help=f"seconds to wait for the broker, retries included (default {PROBE_TIMEOUT:g})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = probe(timeout=options["timeout"])
        except ImproperlyConfigured as exc:
            self.stdout.write(f"unusable: {exc}")
            self._exit(UNUSABLE, str(exc))
        code, line = verdict(status)
        self.stdout.write(line)
        for detail in describe(status):
            self.stdout.write(detail)
        sealer = scheduler_config().sealer
        if sealer is not None:
            # The key ids, to compare with `backchannel keys id` on castellum's side.
            recipients = ", ".join(sealer.recipient_kids[1:]) or "none"
            self.stdout.write(
                f"sealing   to castellum key {sealer.recipient_kids[0]} (also listed: "
                f"{recipients}), signed by {sealer.signer_kid}, channel {sealer.channel}"
            )
        if code == UNUSABLE:
            self._exit(code, "the broker cannot be used")
        elif code == NO_LISTENER:
            self._exit(code, "no listener holds the stream")

    def _exit(self, code: int, message: str) -> NoReturn:
        """End with ``code``: quietly from the command line (the verdict is
        printed already), with ``CommandError`` through ``call_command``."""
        if getattr(self, "_called_from_command_line", False):
            self.stdout.flush()
            sys.exit(code)
        raise CommandError(message, returncode=code)


def verdict(status: BrokerStatus) -> tuple[int, str]:
    """The exit status and the one-line verdict."""
    if status.error is not None:
        return UNUSABLE, f"unusable: the broker at {status.url} cannot be used: {status.error}"
    listener = status.listener
    if listener is None or not listener.held:
        return NO_LISTENER, (
            f"no listener: the broker at {status.url} answers, but no `backchannel agent` "
            f"holds {status.stream}; jobs wait until one connects"
        )
    return OK, (
        f"ok: the broker at {status.url} answers, and listener "
        f"{listener.listener_id or '(no id)'} holds {status.stream}"
    )


def describe(status: BrokerStatus) -> list[str]:
    """The details, a few lines of text."""
    if status.error is not None:
        return [f"broker    {status.url}: {status.error}"]
    lines = [f"broker    {status.url}: reachable"]
    if status.channel != DEFAULT_CHANNEL:
        lines.append(f"channel   {status.channel}")
    listener = status.listener
    if listener is not None and listener.held:
        since = listener.since.isoformat() if listener.since else "?"
        lines.append(
            f"listener  {listener.listener_id or '(no id)'} on instance "
            f"{listener.instance or '?'} since {since}"
        )
    else:
        lines.append("listener  none: jobs wait until `backchannel agent` connects")
    if status.stats is not None:
        counts = ", ".join(f"{state.value} {status.stats.jobs.get(state, 0)}" for state in JobState)
        age = status.stats.oldest_pending_age_seconds
        oldest = "-" if age is None else f"{age:.1f} s"
        lines.append(f"jobs      {counts}; oldest pending {oldest}")
    return lines
