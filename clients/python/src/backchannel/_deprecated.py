"""Keyword arguments that were renamed, and the warning their old names give."""

from __future__ import annotations

import warnings
from typing import TypeVar

T = TypeVar("T")

#: What each name means, for the warning's text.
MEANING = {
    "job_timeout": "the job's own timeout at the broker, after which it expires",
    "wait": "how long the caller waits",
}


def renamed(where: str, old: str, new: str, old_value: T | None, new_value: T | None) -> T | None:
    """The value given as ``new``, or as its deprecated name ``old`` (with a
    ``DeprecationWarning`` pointing at the caller of ``where``); ``TypeError``
    when both are given."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"{where}() takes {new}= or its deprecated name {old}=, not both")
    warnings.warn(
        f"{where}({old}=) is deprecated: use {new}= ({MEANING[new]})",
        DeprecationWarning,
        # renamed() <- the method <- its caller.
        stacklevel=3,
    )
    return old_value
