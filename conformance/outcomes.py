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
    NOT_RUN = "not run"  # the preflight failed: the check could only have failed for the same reason
    ADVICE = "advice"


@dataclass
class CheckResult:
    check_id: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    #: work of earlier checks seen while this one ran (already killed)
    leaks: list[str] = field(default_factory=list)
    #: the root cause, when it is not this check's own finding (an exception raised at one place, a
    #: call that blocks, events that never come): failures with one cause are grouped in the summary
    cause: str = ""


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


def cause_of(exc: BaseException) -> str:
    """A grouping key for an exception from the executor: its type and where in the executor it was
    raised (the same defect seen by many checks has one cause)."""
    frames = [f for f in traceback.extract_tb(_traceback(exc)) if not f.filename.startswith(_SUITE_DIR)]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__} raised{where}: {str(exc)[:200]}"


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
