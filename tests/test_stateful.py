"""The state machine catches bugs no contract check sees -- for the right reason -- shrinks them, and
replays them from a file; the reference executors pass it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import checks
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check
from conformance.harness.stateful import ExecutorMachine, PropertyViolated, hypothesis_settings, run_stateful
from tests.broken_executors import NEGATIVE_CONTROLS, REFERENCE, STATEFUL_ONLY, Control, RebuildsKeyFromNames

REPO = Path(__file__).resolve().parent.parent
STATEFUL_CONTROLS = NEGATIVE_CONTROLS["stateful.scheduler_action_sequences"]
#: Programmes explored by count, not by time (``examples``), with a fixed seed, so that a busy machine only
#: makes the test slower. (Timing still moves a programme a little: whether a task has finished when a rule
#: reads the executor.) ``benchmarks/bench.py --only detection`` measures programmes until caught over
#: several seeds, idle and busy: a median of 4-8 and at most 70 of 96 runs per major (RESULTS.md). The
#: tail is what a fixed count must cover: 200 keeps a miss far less likely than one in a thousand CI runs,
#: and costs nothing when the control is caught early (as it nearly always is).
EXAMPLES = 200


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


#: A hang guard, not a deadline: exploration here is counted in programmes, so its duration follows the
#: machine (on two busy cores beside other tests' worker processes, a control that needs 33 programmes has
#: taken more than the suite's default 600 s).
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("control", STATEFUL_CONTROLS, ids=[c.name for c in STATEFUL_CONTROLS])
def test_state_machine_catches_for_the_right_reason(control: Control, sandbox: Sandbox) -> None:
    """Generation alone (no shrinking: these tests ask whether, not how small), with a fixed seed."""
    with pytest.raises(PropertyViolated) as caught:
        run_stateful(ExecutorProfile(executor_class=control.executor), sandbox, derandomize=True,
                     shrink=False, examples=EXAMPLES)
    finding = str(caught.value).split("Minimal failing programme", 1)[0]
    assert re.search(control.expect, finding, re.S), (
        f"the state machine failed {control.name}, but not for the defect it carries (/{control.expect}/):\n"
        f"{caught.value}")


@pytest.mark.parametrize("executor", list(REFERENCE.values()), ids=list(REFERENCE))
def test_reference_executors_keep_every_invariant(executor: type, sandbox: Sandbox) -> None:
    explored = run_stateful(ExecutorProfile(executor_class=executor), sandbox, derandomize=True)
    assert explored.examples >= 1 and explored.tasks >= 1, explored
    assert explored.describe().startswith("explored ")


def test_failure_is_shrunk_and_replayed_by_the_generated_reproducer(sandbox: Sandbox, tmp_path: Path) -> None:
    """A deterministic defect (a mapped TI's key rebuilt without its map index): hypothesis shrinks it and
    the reproducer written from the recorded steps fails the same way in a fresh process."""
    with pytest.raises(PropertyViolated) as caught:
        run_stateful(ExecutorProfile(executor_class=RebuildsKeyFromNames), sandbox, derandomize=True,
                     reproducer_dir=tmp_path, examples=EXAMPLES)
    message = str(caught.value)
    prop = message.split(":", 1)[0]
    assert prop.startswith("SPEC PROP "), message
    assert "Minimal failing programme" in message and "state.begin(" in message
    reproducers = list(tmp_path.glob("test_reproduce_*.py"))
    assert len(reproducers) == 1 and str(reproducers[0]) in message
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE", "PYTEST_XDIST"))}
    replay = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(reproducers[0])],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 1, replay.stdout[-3000:] + replay.stderr[-3000:]
    assert "event keys are exactly the keys given" in replay.stdout


def _requeue_give_up_seconds() -> float | None:
    """The installed base's retry window for a key queued again while still running (Airflow 2's
    ``RunningRetryAttemptType.MIN_SECONDS``), or None where ``trigger_tasks`` never gives up (3.3)."""
    import inspect

    from airflow.executors import base_executor

    retry = getattr(base_executor, "RunningRetryAttemptType", None)
    # the module's source, not the method's: trigger_tasks is wrapped by a tracing decorator on 2.10+
    return float(retry.MIN_SECONDS) if retry and ".can_try_again()" in inspect.getsource(base_executor) else None


def test_a_requeue_the_installed_base_gives_up_on_is_not_a_lost_task(sandbox: Sandbox) -> None:
    """Airflow 2's BaseExecutor drops a key queued again while its previous run still runs, once its retry
    window has passed ("could not queue task ... still running"). Found as a false PROP-8 on the reference
    LocalExecutor under load (a held task re-queued, then released more than 10 s later): the machine
    follows the installed base's rule, and only after the window."""
    from conformance.harness.stateful import machine_for
    from conformance.harness.strategies import HELD, TaskSpec
    from conformance.harness.timing import wait_until

    window = _requeue_give_up_seconds()
    if window is None:
        pytest.skip("the installed BaseExecutor keeps a re-queued key queued until its previous run ends")
    machine = machine_for(ExecutorProfile(executor_class=REFERENCE["LocalExecutor"]), sandbox)
    machine.config.deadline = float("inf")  # steps driven by hand, as a reproducer does: no exploration budget
    state = machine()
    try:
        state.begin(parallelism=2, specs=[TaskSpec(kind=HELD), TaskSpec()])
        state.scheduler_loop(dags=None)
        state.check_properties()
        state.requeue_in_flight(task=0, specs=[TaskSpec()], same_loop=False)
        state.check_properties()
        held = state.tracked[0]
        assert held.requeued and held.accepted == 2, held

        def loop() -> None:
            state.scheduler_loop(dags=None)
            state.check_properties()

        wait_until(lambda: held.task.key not in state.h.executor.queued_tasks,
                   "the base to give up on the re-queued key", window * 6, poll=0.2, each=loop)
        state.check_properties()
        assert held.accepted == 1, "the given-up queue call still counts"
        state.release(task=0)
        state.check_properties()
    finally:
        state.teardown()  # drains, ends, and judges every task against the journal


def test_every_marked_invariant_is_checked() -> None:
    """A SPEC PROP invariant left out of PROPERTIES would never run."""
    assert sorted(ExecutorMachine.PROPERTIES) == ExecutorMachine.properties()


def test_hypothesis_profiles() -> None:
    assert hypothesis_settings("ci").stateful_step_count < hypothesis_settings("thorough").stateful_step_count
    assert hypothesis_settings("ci").deadline is None and hypothesis_settings("ci").database is None
    with pytest.raises(ValueError, match="unknown hypothesis profile"):
        hypothesis_settings("exhaustive")
