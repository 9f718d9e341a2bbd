"""Verdicts as data: the outcome of a check, and the exceptions a check raises to reach one.

Jepsen's checkers answer *valid*, *invalid* or *unknown*, and only evidence makes a history invalid.
Here: ``PASSED``; ``FAILED`` (evidence that the executor broke its clause); ``INCONCLUSIVE`` (a budget
ran out while the backend was still visibly making progress: slow, not wrong); plus the outcomes that
are not verdicts on the executor (``NOT_SUPPORTED``, ``NOT_APPLICABLE``, ``ADVICE``).

This module is the bottom of the check API: it imports nothing from the rest of the suite.
"""

from __future__ import annotations

import linecache
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

_SUITE_DIR = str(Path(__file__).resolve().parent)


class Outcome(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    NOT_SUPPORTED = "not supported"
    NOT_APPLICABLE = "not applicable"
    ADVICE = "advice"


@dataclass
class CheckResult:
    check_id: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    #: work of this check seen after it ended, and processes it left behind (already killed)
    leaks: list[str] = field(default_factory=list)


class ConformanceFailure(AssertionError):
    """A check found the executor breaking its contract clause."""


class Inconclusive(Exception):
    """A budget ran out while the journal showed the backend still progressing: slow, not wrong."""


class NotSupported(Exception):
    """The executor lacks a capability the check needs (reported, not failed)."""


class NotApplicable(Exception):
    """The check cannot say anything about this executor on this Airflow; the message says why."""


class AdviceGiven(Exception):
    """An ATTR-2a convention is not followed: reported as advice, never as a failure."""


def executor_frames(exc: BaseException, limit: int = 3) -> str:
    """The innermost frames of ``exc`` that are not the suite's own (the executor's, or the Airflow
    base class it inherits), as ``file:line in func: source`` lines -- where the author should look."""
    frames = [f for f in traceback.extract_tb(_traceback(exc)) if not f.filename.startswith(_SUITE_DIR)]
    lines = []
    for frame in frames[-limit:]:
        source = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
        lines.append(f"{frame.filename}:{frame.lineno} in {frame.name}: {source}")
    return "\n".join(lines)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` followed by where it was raised in the executor's code (if anywhere)."""
    where = executor_frames(exc)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text}\n  raised at:\n    " + where.replace("\n", "\n    ") if where else text


def _traceback(exc: BaseException) -> TracebackType | None:
    tb: Any = exc.__traceback__
    return tb if isinstance(tb, TracebackType) else None
