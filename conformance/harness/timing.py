"""The one time model: every wait in the suite takes its deadline from here.

A verdict must not depend on how fast the machine or the backend happens to be. So no wait has a
fixed deadline of its own: a ``TimeModel`` turns a short calibration of *this* executor on *this*
machine (how long a no-op task takes from queue to terminal event, how long a heartbeat takes) into
budgets, with a floor so that a very fast calibration cannot make them tight, and a user ``scale``
(``--conformance-time-scale``) on top. Every wait still ends the moment its condition holds
(``wait_until``), so a fast executor stays fast whatever the budgets are.

There is one timeout exception, ``WaitTimedOut``, and one polling loop, ``wait_until``; the harness,
the sandbox, the state machine and the e2e tier all use them. This module imports nothing from
Airflow or from the rest of the suite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: Floors (seconds, before ``scale``): what a budget is at least, however fast the calibration was.
FLOORS: dict[str, float] = {
    "call": 10.0,  # any executor call except heartbeat/end/terminate
    "heartbeat": 10.0,  # one heartbeat()
    "event": 10.0,  # a task going from queued to its terminal event (or to its start)
    "report": 4.0,  # a task whose work finished, to its terminal event (decisive evidence past it)
    "end": 30.0,  # end() with work in flight
    "terminate": 15.0,  # terminate() and the task processes going away after it
    "settle": 3.0,  # released probes writing their end entry; leftovers going away
    "window": 0.3,  # an observation window: the chance a broken executor gets to show itself
    "state_machine": 6.0,  # the state machine's exploration (generation): as many programmes as fit
    "shrink": 20.0,  # shrinking a failing programme, once one was found
    "e2e": 120.0,  # one DAG run under a real scheduler
}

#: How many calibrated round trips (or heartbeats) a budget allows before its floor applies.
_MARGINS: dict[str, tuple[str, float]] = {
    "call": ("heartbeat", 20.0),
    "heartbeat": ("heartbeat", 20.0),
    "event": ("round_trip", 8.0),
    "report": ("report_latency", 8.0),
    "end": ("round_trip", 20.0),
    "terminate": ("round_trip", 8.0),
    "settle": ("round_trip", 4.0),
    "window": ("start_latency", 3.0),
    # Counted in round trips, not examples: a slow backend gets the same exploration per minute of CI.
    "state_machine": ("round_trip", 60.0),
    "shrink": ("round_trip", 40.0),
    "e2e": ("round_trip", 60.0),
}


class WaitTimedOut(AssertionError):
    """A condition awaited with a budget did not hold in time. The message says what was awaited and
    the state that explains it; ``evidence`` carries that state for whoever classifies the verdict."""

    def __init__(self, message: str, *, what: str = "", budget: float = 0.0, cause: str = ""):
        super().__init__(message)
        self.what = what
        self.budget = budget
        self.cause = cause  # a root cause shared by every check that times out the same way


class CeilingReached(Exception):
    """The run's ceiling (``--max-minutes``) ended a wait or an exploration before its own budget did: the
    budget was exhausted by the user's limit, which is never evidence -- the check is *inconclusive*."""


#: wall-clock time (``time.time()``, comparable across processes) when the whole run must stop, or None
_CEILING: list[float] = []


#: After the ceiling, work already in flight gets this long to be cut short and torn down (its own waits end
#: at the ceiling; its executor's end() and the worker's cleanup take the rest) before its worker is ended. A
#: run therefore ends within ``--max-minutes`` plus this grace plus the report (SPEC: the ceiling).
CEILING_GRACE = 60.0


def set_ceiling(at: float | None) -> None:
    """Every later wait of this process ends by ``at`` (epoch seconds) at the latest; None lifts it."""
    _CEILING[:] = [] if at is None else [at]


def ceiling() -> float | None:
    return _CEILING[0] if _CEILING else None


def remaining() -> float | None:
    """Seconds left before the run's ceiling (never below 0), or None without one."""
    return max(0.0, _CEILING[0] - time.time()) if _CEILING else None


def capped(budget: float) -> tuple[float, bool]:
    """``budget``, shortened to what the ceiling leaves; and whether it had to be."""
    left = remaining()
    return (left, True) if left is not None and left < budget else (budget, False)


#: called as ``listener(what, waited, budget)`` every LONG_WAIT_EVERY seconds of one long wait: the
#: session shows a live line naming what the check is waiting for (a slow backend looks alive).
LONG_WAIT_LISTENERS: list[Callable[[str, float, float], None]] = []
LONG_WAIT_EVERY = 5.0


def wait_until(condition: Callable[[], T], what: str, budget: float, *, poll: float = 0.01,
               explain: Callable[[], str] | None = None, each: Callable[[], None] | None = None,
               judged: bool = False) -> T:
    """Call ``each`` (if given) then ``condition`` until it returns something truthy; return that.

    Past ``budget`` seconds raise ``WaitTimedOut`` naming ``what`` and, through ``explain``, the state
    that explains why it did not happen. The pause between polls is an ``Event.wait`` -- the process
    is waiting for a condition, not sleeping as synchronisation.

    A ``judged`` wait (one a verdict rests on) ends at the run's ceiling at the latest, raising
    ``CeilingReached`` if that cut it short; clean-up waits keep their own (short) budgets."""
    started = time.monotonic()
    full_budget = budget
    budget, cut = capped(budget) if judged else (budget, False)
    limit = started + budget
    pause = threading.Event()
    told = started
    while True:
        if each is not None:
            each()
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if LONG_WAIT_LISTENERS and now - told >= LONG_WAIT_EVERY:
            told = now
            for listener in LONG_WAIT_LISTENERS:
                listener(what, now - started, budget)
        if now > limit:
            if cut:
                raise CeilingReached(f"the run's --max-minutes ceiling ended the wait for {what} after "
                                     f"{budget:.1f}s of its {full_budget:.1f}s budget")
            detail = ""
            if explain is not None:
                try:
                    detail = explain()
                except Exception as exc:  # an explanation must never hide the timeout itself
                    detail = f"(state unavailable: {type(exc).__name__}: {exc})"
            message = f"waited {budget:.1f}s for {what}, it did not happen" + (f"\n{detail}" if detail else "")
            raise WaitTimedOut(message, what=what, budget=budget)
        pause.wait(poll)


@dataclass(frozen=True)
class Calibration:
    """What a few no-op tasks cost on this machine with this executor (seconds, the worst sample)."""

    round_trip: float = 0.0  # queue -> terminal event
    start_latency: float = 0.0  # queue -> the task's process started (journal)
    report_latency: float = 0.0  # the task's process ended (journal) -> terminal event
    heartbeat: float = 0.0  # one heartbeat() with nothing to do
    #: seconds this process took for a fixed piece of CPU work (``machine_pace``) when calibrated
    pace: float = 0.0
    samples: int = 0
    error: str = ""  # why calibration could not finish (then the floors apply)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: how much slower than at calibration the machine must be before a silent timeout is not decisive: well
#: above what a second test worker or a busy neighbour does to the best of several short rounds
SLOWDOWN_THRESHOLD = 3.0


def machine_pace(rounds: int = 5) -> float:
    """Wall seconds for a fixed piece of CPU work in this process (the best of ``rounds``): how fast the
    machine runs *us* right now. Compared with the pace at calibration, it tells a timeout on a machine
    that became busy after the budgets were set from one that did not."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class TimeModel:
    """Budgets for every wait, from one calibration, floors and a user scale."""

    scale: float = 1.0
    calibration: Calibration = field(default_factory=Calibration)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"time scale must be > 0, got {self.scale!r}")

    def budget(self, kind: str) -> float:
        """Seconds allowed for ``kind`` (a key of ``FLOORS``); a typo is an error, not a default."""
        if kind not in FLOORS:
            raise KeyError(f"unknown budget kind {kind!r}; known: {sorted(FLOORS)}")
        measure, margin = _MARGINS[kind]
        measured = float(getattr(self.calibration, measure)) * margin
        if kind == "window":
            # A window is the chance a broken executor gets to show itself: a scale below 1 (quick
            # runs of the suite's own tests) shortens waits that end early anyway, never the window.
            return max(FLOORS[kind], measured) * max(self.scale, 1.0)
        return max(FLOORS[kind], measured) * self.scale

    def scaled(self, factor: float) -> TimeModel:
        return TimeModel(scale=self.scale * factor, calibration=self.calibration)

    def calibrated(self, calibration: Calibration) -> TimeModel:
        return TimeModel(scale=self.scale, calibration=calibration)

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "calibration": self.calibration.as_dict(),
                "budgets": {kind: round(self.budget(kind), 3) for kind in FLOORS}}
