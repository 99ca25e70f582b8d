"""Castellum's job handlers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from backchannel.django.castellum import JobContext, JobError, handler

INVITATIONS = {"abc": "Ada Lovelace", "def": "Grace Hopper"}


@handler("invitation.lookup")
def lookup(payload: dict[str, str], job: JobContext) -> dict[str, Any]:
    name = INVITATIONS.get(payload["token"])
    if name is None:
        raise JobError("no such invitation", status=404, token=payload["token"])
    return {
        "name": name,
        "job": job.id,
        "attempt": job.attempt,
        "before_deadline": job.remaining() > 0,
    }


@handler("participant.lookup")
def participant(payload: dict[str, str], job: JobContext) -> dict[str, Any]:
    # A "not found" with a code of its own, for the submitter's program.
    raise JobError("no such participant", status=404, code="no_such_participant")


@handler("castellum.crash")
def crash(payload: Any, job: JobContext) -> Any:
    raise RuntimeError("internal detail that must stay inside: /srv/castellum/participants.db")


@handler("castellum.clock")
def clock(payload: Any, job: JobContext) -> dict[str, datetime]:
    # Dates are encoded by Django's JSON encoder.
    return {"now": datetime.now(timezone.utc), "deadline": job.deadline}
