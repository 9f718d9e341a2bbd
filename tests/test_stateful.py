"""The state machine catches bugs no contract check sees, shrinks them, and replays them from a file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import checks
from conformance.outcomes import Outcome
from conformance.profile import ExecutorProfile
from conformance.runner import run_check
from conformance.sandbox import Sandbox
from conformance.stateful import PropertyViolated, hypothesis_settings, run_stateful
from conformance.timing import TimeModel
from tests.broken_executors import STATEFUL_ONLY

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("executor", STATEFUL_ONLY, ids=[c.__name__ for c in STATEFUL_ONLY])
def test_stateful_only_bugs_pass_every_contract_check(executor: type, sandbox: Sandbox) -> None:
    profile = ExecutorProfile(executor_class=executor)
    caps = profile.capability_set()
    failed = []
    for check_id, spec in sorted(checks.catalogue().items()):
        if spec.area in ("stateful", "e2e"):  # the contract tier only: e2e starts a real Airflow (opt-in)
            continue
        result = run_check(spec, profile, sandbox, caps)
        if result.outcome is Outcome.FAILED:
            failed.append(check_id)
    assert not failed, f"{executor.__name__} is caught by contract checks too: {failed}"


#: Shrinking with real processes takes minutes for these, and on a loaded runner hypothesis may find the
#: multi-dag filter bug but fail to replay it (the events pending at that call depend on timing): they run
#: with `-m slow` (see README). CI shrinks and replays the workload control (3.3+).
_SLOW = {"DropsEventWhenTwoRunTogether", "ExceedsParallelismAfterRevoke", "DuplicateEventAfterMultiDagFilter"}


@pytest.mark.parametrize("executor", [pytest.param(c, marks=pytest.mark.slow) if c.__name__ in _SLOW else c
                                      for c in STATEFUL_ONLY], ids=[c.__name__ for c in STATEFUL_ONLY])
def test_failure_is_shrunk_and_replayed_by_the_generated_reproducer(executor: type, sandbox: Sandbox,
                                                                    tmp_path: Path) -> None:
    with pytest.raises(PropertyViolated) as caught:
        # Three times the default budget: on a loaded runner the derandomized examples run slower, and a
        # budget that ends before the finding example is a "not found" this test must not report.
        run_stateful(ExecutorProfile(executor_class=executor), sandbox, derandomize=True, reproducer_dir=tmp_path,
                     time_model=TimeModel(scale=3.0))
    message = str(caught.value)
    prop = message.split(":", 1)[0]
    assert prop.startswith("SPEC PROP ")
    assert "Minimal failing programme" in message and "state.first_tasks(" in message
    reproducers = list(tmp_path.glob("test_reproduce_*.py"))
    assert len(reproducers) == 1 and str(reproducers[0]) in message
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE", "PYTEST_XDIST"))}
    replay = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(reproducers[0])],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 1, replay.stdout[-3000:] + replay.stderr[-3000:]
    assert prop in replay.stdout


def test_hypothesis_profiles() -> None:
    assert hypothesis_settings("ci").max_examples < hypothesis_settings("thorough").max_examples
    assert hypothesis_settings("ci").deadline is None and hypothesis_settings("ci").database is None
    with pytest.raises(ValueError, match="unknown hypothesis profile"):
        hypothesis_settings("exhaustive")
