"""Every check fails on a deliberately broken executor; a check nobody has seen fail is not a check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance import checks
from conformance.harness.context import RunOptions
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check
from conformance.harness.timing import TimeModel
from tests.broken_executors import NEGATIVE_CONTROLS, Control, area_marks, missing_on_this_airflow

#: Broken executors often fail by missing a budget; a correct executor meets it in milliseconds. The
#: floors scaled down keep this file quick; the decisive-evidence rules keep the verdicts FAILED.
FAST = TimeModel(scale=0.3)

CASES = [pytest.param(check_id, control, id=f"{check_id}-{control.name}", marks=area_marks(check_id))
         for check_id, controls in sorted(NEGATIVE_CONTROLS.items()) for control in controls]


def test_every_check_has_a_negative_control() -> None:
    missing = sorted(set(checks.catalogue()) - set(NEGATIVE_CONTROLS))
    assert not missing, f"checks without a broken executor that they catch: {missing}"
    vague = [f"{check_id}: {c.name}" for check_id, controls in NEGATIVE_CONTROLS.items() for c in controls
             if not c.expect]
    assert not vague, f"controls that do not say what their check must report: {vague}"
    unknown = sorted(set(NEGATIVE_CONTROLS) - set(checks.catalogue()))
    assert not unknown, f"negative controls for checks that do not exist: {unknown}"


@pytest.mark.parametrize(("check_id", "control"), CASES)
def test_check_catches_broken_executor(check_id: str, control: Control, sandbox: object, tmp_path: Path) -> None:
    spec = checks.get(check_id)
    if spec.area == "stateful":
        pytest.skip("state-machine controls are searched, shrunk and replayed in test_stateful.py")
    if not spec.applies():
        pytest.skip(f"{check_id} applies to {spec.applies_text} only")
    missing = missing_on_this_airflow(check_id)
    if missing:
        pytest.skip(f"no executor can be judged on {check_id} here: {missing}")
    profile = ExecutorProfile(executor_class=control.executor, executor_kwargs=dict(control.kwargs),
                              backend=control.backend)
    # The state machine uses a fixed seed here, so that a negative control is found every time.
    options = RunOptions(time=FAST, derandomize=True, reproducer_dir=tmp_path)
    result = run_check(spec, profile, sandbox, options=options)  # type: ignore[arg-type]
    wanted = Outcome.ADVICE if control.advice else Outcome.FAILED
    assert result.outcome is wanted, (
        f"{check_id} did not catch {control.name}: outcome {result.outcome.value}\n{result.message}")
    # Caught for the right reason: the finding the control was built for, not another clause, a teardown
    # problem or a timeout that happened to fail the check.
    finding = result.message.split("\nAlso found while tearing the check down:", 1)[0]
    assert re.search(control.expect, finding, re.S), (
        f"{check_id} failed {control.name}, but not for the defect it carries (expected /{control.expect}/):\n"
        f"{result.message}")
    if wanted is Outcome.FAILED:
        assert f"[{check_id}]" in result.message and spec.clause in result.message
        assert "How to fix:" in result.message
