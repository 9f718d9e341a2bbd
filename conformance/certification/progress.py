"""What a certification tells its user while it runs: the time plan after calibration (round trip, start
and report latency, the main budgets, an estimate of the run's length) and, while checks are in flight, a
line at least every ``EVERY`` seconds naming them -- a remote executor's run is never silent for minutes.

The estimate is a model, not a promise: the overlapped contract checks cost about ``ROUND_TRIPS_PER_CHECK``
calibrated round trips each, on the workers the state machine's lanes leave free; the state machine its
exploration budget over its lanes; a failing run adds the shrink budget and up to three replays.
``benchmarks/RESULTS.md`` compares estimates with measured runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: seconds between two progress lines while nothing else was said
EVERY = 30.0
#: what one contract check costs, in calibrated round trips, and at least (building and ending executors):
#: measured on the reference LocalExecutor behind a 5 s round trip (198 check-seconds for 48 checks)
ROUND_TRIPS_PER_CHECK = 1.0
SECONDS_PER_CHECK = 0.5
#: a replay of a failing programme, in round trips (a minimal programme is a few steps), and how many at most:
#: ``conformance.harness.stateful.REPLAYS`` (not imported here: it imports hypothesis and Airflow)
ROUND_TRIPS_PER_REPLAY = 10.0
REPLAYS = 3

OnProgress = Callable[[str], None]


def estimate(model: Any, checks: int, workers: int, lanes: int) -> tuple[float, float]:
    """Seconds a passing run is expected to take after calibration, and what a failing one may add.

    The state machine's lanes explore for its budget over the lanes (and drain a few round trips); the
    contract checks run on the workers the lanes leave free meanwhile, and on all of them after."""
    round_trip = max(float(model.calibration.round_trip), 0.05)
    exploration = float(model.budget("state_machine")) / max(1, lanes) + 2 * round_trip
    contract = checks * max(ROUND_TRIPS_PER_CHECK * round_trip, SECONDS_PER_CHECK)
    free = max(1, workers - lanes)
    left = contract - free * exploration
    passing = exploration + left / max(1, workers) if left > 0 else max(exploration, contract / free)
    failing = float(model.budget("shrink")) + REPLAYS * ROUND_TRIPS_PER_REPLAY * round_trip
    return passing, failing


def plan(model: Any, checks: int, workers: int, lanes: int, ceiling_left: float | None) -> list[str]:
    """The lines printed once the preflight has calibrated the time model."""
    cal = model.calibration
    passing, failing = estimate(model, checks, workers, lanes)
    lines = [f"calibrated: round trip {cal.round_trip:.2f}s (start {cal.start_latency:.2f}s, report "
             f"{cal.report_latency:.2f}s), idle heartbeat {cal.heartbeat * 1000:.0f}ms, time scale {model.scale:g}",
             "budgets: " + ", ".join(f"{kind} {model.budget(kind):.0f}s" for kind in
                                     ("event", "report", "end", "state_machine", "shrink")),
             f"plan: {checks} checks on {workers} worker(s), the state machine in {lanes} lane(s); about "
             f"{_minutes(passing)} if it passes, up to {_minutes(passing + failing)} if the state machine finds "
             "something (shrinking and replaying it)"]
    if ceiling_left is not None:
        lines.append(f"ceiling: {_minutes(ceiling_left)} left of --max-minutes (then unstarted checks are not run, "
                     "work in flight gets a grace to be torn down)")
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Ticker:
    """Says what is in flight every ``EVERY`` seconds in which nothing else was said (a daemon thread)."""

    def __init__(self, say: OnProgress, in_flight: Callable[[], list[str]], every: float = EVERY):
        self._say, self._in_flight, self._every = say, in_flight, every
        self._stop = threading.Event()
        self._last = time.monotonic()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="conformance-progress", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def spoke(self) -> None:
        """Something else was printed (a check's result): the next line is due ``every`` seconds later."""
        self._last = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(1.0):  # a clock for the display, not a synchronisation
            if time.monotonic() - self._last >= self._every:
                running = self._in_flight()
                elapsed = time.monotonic() - self._started
                if running:
                    self._say(f"  ... {elapsed:.0f}s in; still running: " + "; ".join(running))
                self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
