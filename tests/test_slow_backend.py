"""Verdicts that hold on a slow backend: the time model is calibrated on the executor under test.

The reference LocalExecutor behind a remote backend's latency (every start and every terminal event
``LATENCY`` seconds late) is still correct and passes every contract check; broken executors behind
the same latency are still caught -- FAILED, never "inconclusive".
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from conformance import checks
from conformance.certification.preflight import run_preflight
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness.context import RunOptions
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check
from conformance.harness.timing import TimeModel, machine_pace
from reference_executors.faults import StateDirectoryOutage
from tests import broken_executors as broken
from tests.slow_backend import LATENCY, SlowReferenceLocal, behind_latency
from tests.test_reference_conformance import NOT_SUPPORTED

#: the state machine is left out here: its dozens of programmes at seconds each take minutes
CONTRACT = sorted(c for c, spec in checks.catalogue().items() if spec.area not in ("e2e", "stateful"))

#: One control per area that fails by waiting (the cases where slowness could hide a defect).
CAUGHT_BEHIND_LATENCY = {
    "heartbeat.triggers_queued_work": broken.NeverStarts,
    "heartbeat.respects_parallelism": broken.ForgetsRunning,
    "heartbeat.priority_order": broken.ReversedPriority,
    "events.one_terminal_event_matching_journal": broken.AlwaysSuccess,
    "lifecycle.at_most_once_per_try": broken.RunsEachTaskTwice,
    "adoption.adopted_tasks_finish_without_rerun": broken.AdoptNeverReports,
}


_CALIBRATED: list[RunOptions] = []


def _calibrated(sandbox: Sandbox) -> RunOptions:
    """One calibration per worker, as a certification session does."""
    if not _CALIBRATED:
        profile = ExecutorProfile(executor_class=SlowReferenceLocal)
        preflight = run_preflight(profile, sandbox, TimeModel())
        assert preflight.passed, preflight.diagnosis
        calibration = preflight.calibration
        assert calibration.round_trip >= 2 * LATENCY, calibration
        _CALIBRATED.append(RunOptions(time=TimeModel().calibrated(calibration)))
    # The machine's pace is taken again for every test: a worker's calibration can date from a quieter
    # minute of the run, and a silent timeout on a machine far slower than then is (rightly) inconclusive.
    options = _CALIBRATED[0]
    return replace(options, time=options.time.calibrated(replace(options.time.calibration, pace=machine_pace())))


@pytest.mark.parametrize("check_id", CONTRACT)
def test_reference_behind_latency_passes(check_id: str, sandbox: Sandbox) -> None:
    spec = checks.get(check_id)
    profile = ExecutorProfile(executor_class=SlowReferenceLocal, backend=StateDirectoryOutage())
    result = run_check(spec, profile, sandbox, options=_calibrated(sandbox))
    if not spec.applies():
        assert result.outcome is Outcome.NOT_APPLICABLE
    elif check_id in NOT_SUPPORTED["LocalExecutor"] or broken.missing_on_this_airflow(check_id):
        assert result.outcome is Outcome.NOT_SUPPORTED, result.message
    else:
        assert result.outcome is Outcome.PASSED, result.message


@pytest.mark.parametrize(("check_id", "executor"), sorted(CAUGHT_BEHIND_LATENCY.items()),
                         ids=sorted(CAUGHT_BEHIND_LATENCY))
def test_broken_behind_latency_is_still_caught(check_id: str, executor: type, sandbox: Sandbox,
                                               tmp_path: Path) -> None:
    profile = ExecutorProfile(executor_class=behind_latency(executor))
    result = run_check(checks.get(check_id), profile, sandbox, options=_calibrated(sandbox))
    if result.outcome is Outcome.INCONCLUSIVE:
        # The machine slowed down past what the calibration measured (a busy CI runner): not a verdict either
        # way. Calibrate again, as a new certification would, and judge once more -- it must be FAILED then.
        _CALIBRATED.clear()
        result = run_check(checks.get(check_id), profile, sandbox, options=_calibrated(sandbox))
    assert result.outcome is Outcome.FAILED, f"{result.outcome.value}: {result.message}"
