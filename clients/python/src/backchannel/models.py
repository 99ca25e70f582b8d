"""What the broker answers with: jobs, the stream holder, counts.

Every type is an immutable dataclass built from the broker's JSON by its
``from_json`` class method, which raises ``ValueError`` (or ``KeyError`` /
``TypeError``) on a body that does not follow the contract; the clients turn
those into :class:`backchannel.UnexpectedResponse`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

#: Any JSON value (what ``json.loads`` returns): payloads, results, errors.
Json = Any

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware ``datetime`` in UTC.

    Accepts any number of fractional digits (microseconds are kept, the rest
    is cut) and ``Z`` or a numeric offset, on every supported Python version
    (``datetime.fromisoformat`` takes ``Z`` only from 3.11 on).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "0")[:6].ljust(6, "0")
    if match.group(8):
        zone = timezone.utc
    else:
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        zone = timezone(-offset if match.group(9) == "-" else offset)
    moment = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=zone)
    return moment.astimezone(timezone.utc)


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else parse_time(_text(value))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


class JobState(str, Enum):
    """The life of a job: ``pending`` -> ``delivered`` -> one terminal state.

    A ``str`` enum, so ``job.state == "done"`` works as well as
    ``job.state is JobState.DONE``.
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether a job in this state can never change again."""
        return self not in (JobState.PENDING, JobState.DELIVERED)

    def __str__(self) -> str:
        return self.value


_STATES = frozenset(state.value for state in JobState)


@dataclass(frozen=True)
class Job:
    """A job as the broker stores it (every field of the contract)."""

    id: int
    kind: str
    state: JobState
    payload: Json
    result: Json
    error: Json
    attempts: int
    created_at: datetime
    deadline: datetime
    completed_at: datetime | None

    @property
    def is_terminal(self) -> bool:
        """``done``, ``failed``, ``expired`` or ``cancelled``: it will not change."""
        return self.state.is_terminal

    @classmethod
    def from_json(cls, data: Any) -> Job:
        """The job of a broker response body (or of an error's ``job``)."""
        body = _object(data)
        return cls(
            id=_integer(body["id"]),
            kind=_text(body["kind"]),
            state=JobState(body["state"]),
            payload=body["payload"],
            result=body["result"],
            error=body["error"],
            attempts=_integer(body["attempts"]),
            created_at=parse_time(_text(body["created_at"])),
            deadline=parse_time(_text(body["deadline"])),
            completed_at=_optional_time(body["completed_at"]),
        )


@dataclass(frozen=True)
class Listener:
    """Who holds the stream (``GET /v1/listener``)."""

    held: bool
    listener_id: str | None
    instance: str | None
    since: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> Listener:
        body = _object(data)
        held = body["held"]
        if not isinstance(held, bool):
            raise TypeError("held must be a boolean")
        listener_id, instance = body["listener_id"], body["instance"]
        return cls(
            held=held,
            listener_id=None if listener_id is None else _text(listener_id),
            instance=None if instance is None else _text(instance),
            since=_optional_time(body["since"]),
        )


@dataclass(frozen=True)
class Stats:
    """Jobs kept in the table by state, and the age of the oldest pending one
    (``GET /v1/stats``)."""

    jobs: Mapping[JobState, int]
    oldest_pending_age_seconds: float | None

    @property
    def open(self) -> int:
        """Jobs not yet answered (``pending`` and ``delivered``)."""
        return self.jobs.get(JobState.PENDING, 0) + self.jobs.get(JobState.DELIVERED, 0)

    @classmethod
    def from_json(cls, data: Any) -> Stats:
        body = _object(data)
        counts = _object(body["jobs"])
        age = body["oldest_pending_age_seconds"]
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))):
            raise TypeError("oldest_pending_age_seconds must be a number")
        return cls(
            jobs={
                JobState(state): _integer(count)
                for state, count in counts.items()
                if state in _STATES  # a state a newer broker added is left out
            },
            oldest_pending_age_seconds=None if age is None else float(age),
        )
