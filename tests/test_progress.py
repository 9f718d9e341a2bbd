"""What a certification says while it runs (``conformance.certification.progress``): the time plan once
calibrated, and a line naming what is in flight whenever nothing else was said for a while."""

from __future__ import annotations

import threading

from conformance.certification.progress import Ticker, estimate, plan
from conformance.harness.timing import Calibration, TimeModel, wait_until


def _remote() -> TimeModel:
    """A backend with a 5 s round trip (2.5 s to start, 2 s to report)."""
    return TimeModel().calibrated(Calibration(round_trip=5.0, start_latency=2.5, report_latency=2.0,
                                              heartbeat=0.01, samples=3))


def test_the_plan_names_the_calibration_the_budgets_and_an_estimate() -> None:
    lines = plan(_remote(), checks=48, workers=6, lanes=4, ceiling_left=180.0)
    assert lines[0].startswith("calibrated: round trip 5.00s (start 2.50s, report 2.00s)"), lines
    assert lines[1].startswith("budgets: event 40s, report 16s, end 100s, state_machine 300s"), lines
    assert lines[2].startswith("plan: 48 checks on 6 worker(s), the state machine in 4 lane(s); about "), lines
    assert lines[3].startswith("ceiling: 3.0 min left of --max-minutes"), lines


def test_a_failing_run_is_estimated_longer_and_lanes_shorten_the_exploration() -> None:
    from conformance.certification import progress
    from conformance.harness.stateful import REPLAYS

    assert progress.REPLAYS == REPLAYS  # the estimate counts the replays the state machine really makes
    passing, failing_extra = estimate(_remote(), checks=48, workers=6, lanes=4)
    alone, _ = estimate(_remote(), checks=48, workers=1, lanes=1)
    assert failing_extra > 0 and alone > passing


def test_the_ticker_says_what_is_in_flight_when_nothing_else_was_said() -> None:
    said: list[str] = []
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            said.append(line)

    ticker = Ticker(say, lambda: ["stateful.scheduler_action_sequences (lane 1 of 2) for 12s"], every=0.2).start()
    try:
        # the ticker's own clock ticks every second: two lines within a few of its ticks
        wait_until(lambda: len(said) >= 2, "two progress lines", 10.0, poll=0.05)
    finally:
        ticker.stop()
    assert all("still running: stateful.scheduler_action_sequences (lane 1 of 2)" in line for line in said), said
