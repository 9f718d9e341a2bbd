"""The time model, evidence-based verdicts, capabilities confirmed by behaviour, harness fidelity."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conformance import checks
from conformance.certification.confirm import confirmed_capabilities
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness.context import RunOptions
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check
from conformance.harness.timing import FLOORS, Calibration, TimeModel, WaitTimedOut, wait_until
from reference_executors.local import LocalExecutor
from tests import broken_executors as broken


def test_budgets_have_floors_scale_with_calibration_and_refuse_typos() -> None:
    idle = TimeModel()
    assert idle.budget("event") == FLOORS["event"]
    remote = idle.calibrated(Calibration(round_trip=13.0, start_latency=6.0, report_latency=6.0, heartbeat=0.01))
    assert remote.budget("event") == pytest.approx(13.0 * 8)
    assert remote.scaled(2).budget("event") == pytest.approx(13.0 * 16)
    assert remote.budget("heartbeat") == FLOORS["heartbeat"]  # a cheap heartbeat keeps the floor
    with pytest.raises(KeyError, match="unknown budget kind"):
        idle.budget("evnt")
    with pytest.raises(ValueError):
        TimeModel(scale=0)


def test_wait_until_ends_as_soon_as_the_condition_holds_and_explains_a_timeout() -> None:
    began = time.monotonic()
    assert wait_until(lambda: time.monotonic() - began > 0.05, "50 ms to pass", 60) is True
    assert time.monotonic() - began < 30  # not the budget: the moment the condition held
    with pytest.raises(WaitTimedOut, match=r"waited 0.1s for the impossible, it did not happen\nstate: nothing"):
        wait_until(lambda: False, "the impossible", 0.1, explain=lambda: "state: nothing")


class StaggeredStarts(LocalExecutor):
    """Correct but slow to start: one queued task reaches the backend every STAGGER seconds."""

    STAGGER = 0.4

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._next_start = 0.0
        self._waiting: list[tuple[Any, Any]] = []

    def _dispatch(self, key: Any, payload: Any) -> None:
        self._waiting.append((key, payload))

    def sync(self) -> None:
        if self._waiting and time.monotonic() >= self._next_start:
            self._next_start = time.monotonic() + self.STAGGER
            LocalExecutor._dispatch(self, *self._waiting.pop(0))
        super().sync()

    def end(self) -> None:
        pause = threading.Event()
        while self._waiting:
            self.sync()
            pause.wait(0.05)
        super().end()


def test_a_backend_still_progressing_is_inconclusive_not_failed(sandbox: Sandbox) -> None:
    """Eight tasks with a 2 s event budget: starts keep coming when it runs out (slow, not wrong)."""
    spec = checks.get("lifecycle.at_most_once_per_try")  # queues tasks and waits for their events
    options = RunOptions(time=TimeModel(scale=0.2))
    profile = ExecutorProfile(executor_class=type("EightStaggered", (StaggeredStarts,), {}))
    original = spec.func

    def eight_tasks(ctx: Any) -> None:
        from conformance.groundtruth.probes import Probe, ProbeKind

        h = ctx.harness(parallelism=8)
        tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(8)]
        h.drain_terminal(tasks)

    object.__setattr__(spec, "func", eight_tasks)
    try:
        result = run_check(spec, profile, sandbox, options=options)
    finally:
        object.__setattr__(spec, "func", original)
    assert result.outcome is Outcome.INCONCLUSIVE, result.message
    assert "still making progress" in result.message and "--conformance-time-scale" in result.message


def test_adoption_is_confirmed_by_behaviour(sandbox: Sandbox) -> None:
    def adopts(executor: type) -> bool:
        return confirmed_capabilities(ExecutorProfile(executor_class=executor), sandbox)["adoption"]

    assert adopts(LocalExecutor)
    assert not adopts(broken.AdoptsNothing)  # overrides, hands everything back, tracks nothing
    assert adopts(broken.AdoptReturnsAdopted)  # tracks them (a broken adoption the checks must see)


def test_an_override_that_adopts_nothing_is_judged_as_not_adopting(sandbox: Sandbox) -> None:
    profile = ExecutorProfile(executor_class=broken.AdoptsNothing)
    caps = confirmed_capabilities(profile, sandbox)
    adopted = run_check(checks.get("adoption.adopted_tasks_finish_without_rerun"), profile, sandbox, caps)
    assert adopted.outcome is Outcome.NOT_SUPPORTED, adopted.message
    assert "applies only to executors that adopt" in adopted.message
    end = run_check(checks.get("lifecycle.end_waits_and_flushes"), profile, sandbox, caps)
    assert end.outcome is Outcome.PASSED, end.message  # now judged like any executor that cannot adopt


class ReadsCoreParallelism(LocalExecutor):
    """Takes no parallelism argument: its real parallelism comes from [core] parallelism."""

    def __init__(self) -> None:
        from airflow.configuration import conf

        super().__init__(parallelism=conf.getint("core", "parallelism"))


def test_a_config_reading_executor_gets_the_parallelism_the_check_wants(sandbox: Sandbox) -> None:
    result = run_check(checks.get("heartbeat.respects_parallelism"),
                       ExecutorProfile(executor_class=ReadsCoreParallelism), sandbox)
    assert result.outcome is Outcome.PASSED, result.message


class ReadsTaskInstanceTable(LocalExecutor):
    """Reads the scheduler's database when it starts, as executors that keep their own rows do."""

    def start(self) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            session.query(TaskInstance).count()
        super().start()


def test_the_sandbox_database_is_migrated(sandbox: Sandbox) -> None:
    result = run_check(checks.get("lifecycle.repeated_build_start_end"),
                       ExecutorProfile(executor_class=ReadsTaskInstanceTable), sandbox)
    assert result.outcome is Outcome.PASSED, result.message


class EndHangsAndNeverStarts(broken.NeverStarts):
    """Two defects: queued work never starts, and end() never returns."""

    def end(self) -> None:
        threading.Event().wait()


def test_a_teardown_problem_is_reported_even_when_the_check_already_failed(sandbox: Sandbox) -> None:
    result = run_check(checks.get("heartbeat.triggers_queued_work"),
                       ExecutorProfile(executor_class=EndHangsAndNeverStarts), sandbox,
                       options=RunOptions(time=TimeModel(scale=0.3)))
    assert result.outcome is Outcome.FAILED
    assert "queued tasks did not start" in result.message
    assert "Also found while tearing the check down" in result.message
    assert "EndHangsAndNeverStarts.end() did not return within" in result.message


class OnlyEndHangs(LocalExecutor):
    """A correct executor but for end(), which never returns."""

    def end(self) -> None:
        threading.Event().wait()


def test_a_teardown_problem_names_its_own_clause_not_the_checks(sandbox: Sandbox) -> None:
    """The check held; tearing it down hit the hung end(): the finding is LIFE-7's (with its fix), grouped by
    one cause across checks -- not the check's title and fix, which would send the author elsewhere."""
    results = [run_check(checks.get(cid), ExecutorProfile(executor_class=OnlyEndHangs), sandbox,
                         options=RunOptions(time=TimeModel(scale=0.3)))
               for cid in ("events.buffer_flush_and_dag_filter", "heartbeat.empty_heartbeat_changes_nothing")]
    for result in results:
        assert result.outcome is Outcome.FAILED, result.message
        assert "tearing this check down found a problem of SPEC LIFE-7" in result.message, result.message
        assert result.cause == "teardown: end() blocks past its budget"
    assert "found its own clause, EVT-3, unbroken" in results[0].message


class EndHangsOnce(LocalExecutor):
    """end() hangs the first time only (a race, as Airflow 3.3's LocalExecutor shows now and then)."""

    hung = False

    def end(self) -> None:
        if not EndHangsOnce.hung:
            EndHangsOnce.hung = True
            threading.Event().wait()
        super().end()


def test_an_end_hang_in_the_preflight_is_named_but_does_not_stop_the_run(sandbox: Sandbox) -> None:
    from conformance.certification.preflight import run_preflight

    result = run_preflight(ExecutorProfile(executor_class=EndHangsOnce), sandbox, TimeModel(scale=0.3))
    assert not result.passed and not result.stops_the_run, result.diagnosis
    assert "end() blocks" in result.diagnosis and result.calibration.samples >= 1


class LateStarter(LocalExecutor):
    """A remote backend that keeps work and starts it later -- here: once the test opens the gate, after
    the check that queued it has ended (and end() returned without waiting)."""

    gate = threading.Event()

    def _dispatch(self, key: Any, payload: Any) -> None:
        def start_when_allowed() -> None:
            if self.gate.wait(120):
                LocalExecutor._dispatch(self, key, payload)

        threading.Thread(target=start_when_allowed, daemon=True).start()

    def end(self) -> None:
        pass  # does not wait for anything


def test_work_that_runs_after_its_check_ended_is_reported_against_that_check(sandbox: Sandbox) -> None:
    from conformance.groundtruth.probes import Probe, ProbeKind

    first = checks.get("lifecycle.repeated_build_start_end")
    original = first.func

    def queue_and_leave(ctx: Any) -> None:
        h = ctx.harness()
        h.queue(Probe.new(ProbeKind.OK))
        h.heartbeat()  # dispatched: the backend keeps it for later

    object.__setattr__(first, "func", queue_and_leave)
    earlier = sandbox.owned_by(first.id)  # other tests in this worker ran this check id too
    try:
        run_check(first, ExecutorProfile(executor_class=LateStarter), sandbox)
    finally:
        object.__setattr__(first, "func", original)
    LateStarter.gate.set()  # the check has ended: now the backend starts what it kept
    owned = sandbox.owned_by(first.id) - earlier
    wait_until(lambda: any(r.task_id in owned for r in sandbox.journal().runs), "the late run to start", 30)
    later = run_check(checks.get("attributes.declared_with_types"), ExecutorProfile(executor_class=LocalExecutor),
                      sandbox)
    assert later.outcome is Outcome.PASSED, later.message  # not blamed on the check that happened to run next
    runs = [(r.task_id, r.started) for r in sandbox.journal().runs if r.task_id in owned]
    assert any(leak.startswith(f"{first.id}: ") for leak in later.leaks), (
        f"late work not reported: leaks {later.leaks}; runs {runs}; {first.id} closed at "
        f"{sandbox._closed.get(first.id)}")


def test_a_long_wait_is_announced_while_it_lasts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live line: listeners hear about a wait that goes on, with what it waits for."""
    from conformance.harness import timing

    heard: list[tuple[str, float, float]] = []
    monkeypatch.setattr(timing, "LONG_WAIT_EVERY", 0.05)
    monkeypatch.setattr(timing, "LONG_WAIT_LISTENERS", [lambda what, waited, budget: heard.append((what, waited,
                                                                                                   budget))])
    calls = iter(range(1000))
    timing.wait_until(lambda: next(calls) >= 30, "the thirtieth poll", 30.0, poll=0.01)
    assert heard and all(what == "the thirtieth poll" and budget == 30.0 for what, _, budget in heard)
    assert heard[0][1] >= 0.05


def test_a_scale_below_one_never_shortens_an_observation_window() -> None:
    """Quick runs scale waits that end early; a window is a broken executor's chance to show itself."""
    quick = TimeModel(scale=0.3)
    assert quick.budget("event") == pytest.approx(FLOORS["event"] * 0.3)
    assert quick.budget("window") == FLOORS["window"]
    assert TimeModel(scale=2.0).budget("window") == pytest.approx(FLOORS["window"] * 2.0)


class _StartsNothing(LocalExecutor):
    """Takes every task and starts none: a wait for them is silent from beginning to end."""

    def _dispatch(self, key: Any, payload: Any) -> None:
        pass


@pytest.mark.parametrize(("pace", "expected"), [(0.0, Outcome.FAILED), (1e-9, Outcome.INCONCLUSIVE)])
def test_a_silent_timeout_is_decisive_unless_the_machine_slowed_down_since_calibration(
        pace: float, expected: Outcome, sandbox: Sandbox) -> None:
    """Nothing moved: that fails the check -- but not when the machine now runs a fixed CPU workload far
    slower than at calibration (here: a calibration pace no machine reaches), which voids the budget."""
    spec = checks.get("lifecycle.at_most_once_per_try")
    options = RunOptions(time=TimeModel(scale=0.2, calibration=Calibration(pace=pace)))
    result = run_check(spec, ExecutorProfile(executor_class=_StartsNothing), sandbox, options=options)
    assert result.outcome is expected, result.message
    if expected is Outcome.INCONCLUSIVE:
        assert "slower than when the budgets were calibrated" in result.message
