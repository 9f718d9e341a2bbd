"""Verdicts as data: the outcome of a check, and the exceptions a check raises to reach one.

Jepsen's checkers answer *valid*, *invalid* or *unknown*, and only evidence makes a history invalid.
Here: ``PASSED``; ``FAILED`` (evidence that the executor broke its clause); ``INCONCLUSIVE`` (a budget
ran out while the backend was still visibly making progress: slow, not wrong); plus the outcomes that
are not verdicts on the executor (``NOT_SUPPORTED``, ``NOT_APPLICABLE``, ``ADVICE``).

This module is the bottom of the check API: it imports nothing from the rest of the suite.
"""

from __future__ import annotations

import linecache
import sysconfig
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

_SUITE_DIR = str(Path(__file__).resolve().parent.parent)  # the whole conformance package


class Outcome(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    NOT_SUPPORTED = "not supported"
    NOT_APPLICABLE = "not applicable"
    NOT_RUN = "not run"  # the preflight failed: the check could only have failed for the same reason
    ADVICE = "advice"
    #: a failure the author listed, with a reason, as expected (a waiver; ``--strict`` accepts none)
    EXPECTED_FAILURE = "expected failure"


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


def with_expectation(result: CheckResult, expected: str | None, strict: bool) -> CheckResult:
    """``result`` as the certificate states it, once the author's expected failures (check id -> reason)
    and ``--strict`` are applied. One definition for every route (pytest, ``certify()``, the CLI):

    - a listed failure is an EXPECTED_FAILURE (under ``strict``: still FAILED, saying it was listed);
    - a listed check that passed is FAILED: the listing is stale and must go;
    - ADVICE under ``strict`` is FAILED; everything else stands."""
    def becomes(outcome: Outcome, message: str) -> CheckResult:
        return CheckResult(result.check_id, outcome, message, result.seconds, list(result.leaks), result.cause)

    if result.outcome is Outcome.FAILED and expected:
        if not strict:
            return becomes(Outcome.EXPECTED_FAILURE, f"expected failure: {expected}")
        return becomes(Outcome.FAILED, f"{result.message}\n\n(listed as an expected failure, {expected!r}; "
                                       "--strict accepts no exceptions)")
    if result.outcome is Outcome.ADVICE and strict:
        return becomes(Outcome.FAILED, f"{result.message}\n\n(advice; --strict accepts no exceptions)")
    if result.outcome in (Outcome.PASSED, Outcome.ADVICE) and expected:
        return becomes(Outcome.FAILED, f"[{result.check_id}] is listed as an expected failure ({expected!r}) but "
                                       "it passed: remove it from the expected failures")
    return result


class ConformanceFailure(AssertionError):
    """A check found the executor breaking its contract clause."""


class Inconclusive(Exception):
    """A budget ran out while the journal showed the backend still progressing: slow, not wrong.
    ``cause`` groups the inconclusive checks that share one reason in the summary."""

    def __init__(self, message: str, cause: str = ""):
        super().__init__(message)
        self.cause = cause


class NotSupported(Exception):
    """The executor lacks a capability the check needs (reported, not failed)."""


class NotApplicable(Exception):
    """The check cannot say anything about this executor on this Airflow; the message says why."""


class AdviceGiven(Exception):
    """An ATTR-2a convention is not followed: reported as advice, never as a failure."""


_LIBRARY_DIRS = tuple({p for p in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("purelib"),
                                    sysconfig.get_paths().get("platlib")) if p})


def _is_library(filename: str) -> bool:
    """A frame of an installed library or the standard library (urllib3, Airflow's own base class, a frozen
    stdlib module such as ``<frozen os>``, ...)."""
    return (filename.startswith(_LIBRARY_DIRS) or filename.startswith("<") or "site-packages" in filename
            or "dist-packages" in filename)


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(_traceback(exc)) if not f.filename.startswith(_SUITE_DIR)]


def _deepest_own(frames: list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The innermost frame in the executor's own code (not a library's), where its author should look."""
    own = [f for f in frames if not _is_library(f.filename)]
    return own[-1] if own else None


def cause_of(exc: BaseException) -> str:
    """A grouping key for an exception from the executor: its type and where in the executor it was
    raised -- its own deepest frame when it has one (the same defect seen by many checks has one cause)."""
    frames = _frames(exc)
    frame = _deepest_own(frames) or (frames[-1] if frames else None)
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__} raised{where}: {str(exc)[:200]}"


def raised_at(exc: BaseException) -> str:
    """``file:line`` of the executor's own deepest frame (else the innermost one not the suite's), or ''."""
    frames = _frames(exc)
    frame = _deepest_own(frames) or (frames[-1] if frames else None)
    return f"{frame.filename}:{frame.lineno}" if frame else ""


def _render(frame: traceback.FrameSummary) -> str:
    source = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
    return f"{frame.filename}:{frame.lineno} in {frame.name}: {source}"


def executor_frames(exc: BaseException, limit: int = 3) -> str:
    """Where the author should look: the executor's own deepest frame first (a library's frames -- urllib3,
    Airflow's base class -- say where it broke, not what called it), then the innermost frames that are
    not the suite's own, as ``file:line in func: source`` lines."""
    frames = _frames(exc)
    own = _deepest_own(frames)
    inner = frames[-limit:]
    lines = [f"(your code) {_render(own)}"] if own is not None and own is not frames[-1] else []
    lines += [_render(frame) for frame in inner if frame is not own or not lines]
    return "\n".join(lines)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` followed by where it was raised in the executor's code (if anywhere)."""
    where = executor_frames(exc)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text}\n  raised at:\n    " + where.replace("\n", "\n    ") if where else text


def _traceback(exc: BaseException) -> TracebackType | None:
    tb: Any = exc.__traceback__
    return tb if isinstance(tb, TracebackType) else None
