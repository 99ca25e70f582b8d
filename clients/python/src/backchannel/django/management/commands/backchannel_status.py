"""``manage.py backchannel_status``: is the broker reachable, is a listener connected?

Exit status 0 when both, 1 when the broker answers but no listener holds the
stream, 2 when the broker cannot be used (unreachable, token refused, or the
settings are wrong).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backchannel.django.conf import scheduler_config
from backchannel.django.status import PROBE_TIMEOUT, BrokerStatus, probe
from backchannel.models import JobState

NO_LISTENER = 1
UNUSABLE = 2


class Command(BaseCommand):
    help = "Say whether the backchannel broker is reachable and a listener holds the stream."

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
            raise CommandError(str(exc), returncode=UNUSABLE) from None
        for line in describe(status):
            self.stdout.write(line)
        sealer = scheduler_config().sealer
        if sealer is not None:
            # The key ids, to compare with `backchannel keys id` on castellum's side.
            recipients = ", ".join(sealer.recipient_kids[1:]) or "none"
            self.stdout.write(
                f"sealing   to castellum key {sealer.recipient_kids[0]} (also listed: "
                f"{recipients}), signed by {sealer.signer_kid}, channel {sealer.channel}"
            )
        if not status.reachable:
            raise CommandError("the broker cannot be used", returncode=UNUSABLE)
        if not status.ok:
            raise CommandError("no listener holds the stream", returncode=NO_LISTENER)


def describe(status: BrokerStatus) -> list[str]:
    """The status as a few lines of text."""
    if status.error is not None:
        return [f"broker    {status.url}: {status.error}"]
    lines = [f"broker    {status.url}: reachable"]
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
