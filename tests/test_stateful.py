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


def test_a_requeue_follows_the_deferred_run_it_resumes(sandbox: Sandbox) -> None:
    """The scheduler queues a key again only when its run deferred (its work ended): the machine releases a
    held task, waits for the journal to show its work ended, then queues the same key -- before the next
    heartbeat, so the executor may not have noticed yet. Two runs, each answered; the teardown judges both
    against the journal. (Re-queueing a key whose work still runs is a history no scheduler produces: the
    false "2 runs, 1 terminal event" failures of correct executors.)"""
    from conformance.harness.stateful import machine_for
    from conformance.harness.strategies import HELD, TaskSpec
    from conformance.harness.timing import wait_until

    machine = machine_for(ExecutorProfile(executor_class=REFERENCE["LocalExecutor"]), sandbox)
    machine.config.deadline = float("inf")  # steps driven by hand, as a reproducer does: no exploration budget
    state = machine()
    try:
        state.begin(parallelism=2, specs=[TaskSpec(kind=HELD), TaskSpec()])
        held = state.tracked[0]

        def loop() -> None:
            state.scheduler_loop()
            state.check_properties()

        # a task defers from a run: wait (heartbeating, as the scheduler does) until the held one has started
        wait_until(lambda: state.h.journal().started(held.task.task_id), "the held task to start",
                   state.h.budget("event"), poll=0.02, each=loop)
        state.requeue_in_flight(task=0, specs=[TaskSpec()], same_loop=True)
        assert held.requeued and held.accepted == 2, held
        runs = state.h.journal().runs_of(held.task.task_id)
        assert len(runs) == 1 and runs[0].finished is not None, "re-queued before its first run's work ended"
        state.check_properties()
        for _ in range(3):
            state.await_progress()
            state.check_properties()
    finally:
        state.teardown()  # drains, ends, and judges every task against the journal
    assert len(state.h.journal().runs_of(held.task.task_id)) == 2
    assert held.outstanding == 0 and held.reports, held


def test_every_marked_invariant_is_checked() -> None:
    """A SPEC PROP invariant left out of PROPERTIES would never run."""
    assert sorted(ExecutorMachine.PROPERTIES) == ExecutorMachine.properties()


def test_hypothesis_profiles() -> None:
    assert hypothesis_settings("ci").stateful_step_count < hypothesis_settings("thorough").stateful_step_count
    assert hypothesis_settings("ci").deadline is None and hypothesis_settings("ci").database is None
    with pytest.raises(ValueError, match="unknown hypothesis profile"):
        hypothesis_settings("exhaustive")
