"""The preflight: one no-op task and one failing task end to end, before anything else.

When an executor cannot do that, every check fails for the same reason and the author drowns in
twenty messages about twenty topics. The preflight runs first (build, start, calibrate on no-op tasks,
one failing task, end), and when it cannot pass it yields one diagnosis that uses the journal -- "tasks
ran and exited 0, but no terminal event came back", "no task ever started", "heartbeat() raises
ConnectionRefusedError at your_pkg/executor.py:553" -- and the run stops there.

It is also a catalogued check (``preflight.task_runs_end_to_end``), so that a runner-agnostic run and
its negative controls see the same verdict. Its measurements are the time model's calibration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import CheckSpec
from conformance.harness.outcomes import CheckResult, Inconclusive, Outcome, describe_exception
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import teardown_finding
from conformance.harness.scheduler import CallTimedOut, QueuedTask, SchedulerHarness
from conformance.harness.timing import Calibration, CeilingReached, TimeModel, WaitTimedOut, machine_pace

_OWNER = "preflight"
#: The first round trip may take this many event budgets (at the floors) while it visibly progresses.
_PATIENCE = 6.0
SAMPLES = 3


@dataclass(frozen=True)
class PreflightResult:
    calibration: Calibration
    diagnosis: str = ""  # empty when the executor ran both tasks end to end
    #: whether the diagnosis stops the run: only when no task can complete at all. When tasks do run but
    #: something specific is wrong (a task launched again and again), the checks that judge it must speak.
    blocks: bool = True
    #: the run's ceiling (--max-minutes) ended the preflight: nothing was judged, nothing else can run
    cut: bool = False
    #: what tearing the preflight's executor down found (an end() past its budget, processes outliving it):
    #: reported as LIFE-7's / LIFE-1's finding, never dropped, never a reason to stop the run
    teardown: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.diagnosis

    @property
    def stops_the_run(self) -> bool:
        return bool(self.diagnosis) and self.blocks


def run_preflight(profile: ExecutorProfile, sandbox: Sandbox, model: TimeModel) -> PreflightResult:
    """Build, start, heartbeat idle, run ``SAMPLES`` no-op tasks and one failing task, end; with what
    tearing it down found."""
    teardown: list[str] = []
    result = _run(profile, sandbox, model, teardown)
    return replace(result, teardown=tuple(teardown)) if teardown else result


def _run(profile: ExecutorProfile, sandbox: Sandbox, model: TimeModel, teardown: list[str]) -> PreflightResult:
    h = SchedulerHarness(profile.build(), sandbox, name="preflight", time_model=model, owner=_OWNER)
    tasks: list[QueuedTask] = []
    calibration = Calibration()
    stage = "building and starting the executor"
    try:
        stage = "start()"
        h.start()
        stage = "an idle heartbeat()"
        idle = []
        for _ in range(3):
            began = time.monotonic()
            h.heartbeat()
            idle.append(time.monotonic() - began)
        stage = "running no-op tasks"
        tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(SAMPLES)]
        _drain(h, tasks, model)
        unrun = _reported_but_never_ran(h, tasks)
        if unrun:
            h.end()
            return PreflightResult(Calibration(error=unrun), unrun)
        calibration = _measure(h, tasks, max(idle))
        stage = "running a failing task"
        failing = h.queue(Probe.new(ProbeKind.RAISE if compat.is_airflow3() else ProbeKind.FAIL))
        tasks.append(failing)
        _drain(h, [failing], model.calibrated(calibration))
        states = [str(e.state) for e in h.terminal_events(failing.key)]
        unrun = _reported_but_never_ran(h, [failing])
        if unrun:
            h.end()
            return PreflightResult(calibration, unrun)
        if states != [str(compat.state_enum().FAILED)]:
            return PreflightResult(calibration, f"a failing task was reported {states or 'never'}: a task whose "
                                   "run raised (2.x: exited non-zero) must end with one FAILED event (self.fail)")
        stage = "end()"
        h.end()
        return PreflightResult(calibration)
    except CallTimedOut as exc:
        h.abandon()  # it already blocked once: teardown must not wait on it again
        if stage == "end()":
            # Tasks ran end to end; only shutdown hung (an intermittent end() hang is not a reason to stop
            # the run): named here, judged by LIFE-7, and the calibration stands.
            return PreflightResult(calibration, f"end() blocks: {exc}; the tasks themselves ran end to end, so "
                                   "the other checks run (lifecycle.end_returns_with_work_in_flight judges end())",
                                   blocks=False)
        return PreflightResult(Calibration(error=str(exc)), f"{stage} blocks: {exc}")
    except CeilingReached as exc:
        return PreflightResult(Calibration(error=str(exc)), f"{stage}: {exc}", cut=True)
    except (WaitTimedOut, Inconclusive) as exc:
        diagnosis, blocks = _diagnose(h, tasks, stage)
        return PreflightResult(Calibration(error=str(exc)), diagnosis, blocks)
    except Exception as exc:
        return PreflightResult(Calibration(error=str(exc)), f"{stage}: raised {describe_exception(exc)}")
    finally:
        teardown += h.close()
        ended = sandbox.reclaim(_OWNER, model.budget("settle"))
        if ended and not h.abandoned:
            teardown.append("processes outlived end() and were ended by the suite: "
                            + "; ".join(p.describe() for p in ended))


def _drain(h: SchedulerHarness, tasks: list[QueuedTask], model: TimeModel) -> None:
    """Heartbeat until every task has its terminal event; give up early on decisive evidence (a task
    whose work ended more than the report budget ago without an event). Before the calibration, nobody
    knows yet how late a backend reports: only a whole event budget of silence after the work ended is
    decisive then -- a backend that reports seconds late is being measured, not judged."""
    calibrated = model.calibration.samples > 0
    silence = model.budget("report" if calibrated else "event")

    def settled() -> bool:
        if all(h.terminal_events(t.key) for t in tasks):
            return True
        if h.ended_unreported(tasks, silence):
            raise WaitTimedOut("work ended without a terminal event")
        return False

    h.drain(settled, f"terminal events for {[t.task_id for t in tasks]}", model.budget("event") * _PATIENCE,
            tasks=tasks, awaiting="terminal")


def _reported_but_never_ran(h: SchedulerHarness, tasks: list[QueuedTask]) -> str:
    """Events for work the journal says never ran: the environment, not the executor's bookkeeping, is
    what to look at first -- judging its events against what "ran" would send the author the wrong way."""
    journal = h.journal()
    unrun = [t for t in tasks if h.terminal_events(t.key) and not journal.runs_of(t.task_id)]
    if not unrun:
        return ""
    states = {t.task_id: [str(e.state) for e in h.terminal_events(t.key)] for t in unrun}
    return (f"the executor reported {states} for tasks that never ran (nothing reached the journal): the "
            "backend does not run the task's command where the probe seam can see it -- a worker that does not "
            "inherit CONFORMANCE_JOURNAL_DIR and PYTHONPATH from the process that runs the scheduler, a command "
            "run in another environment, or a backend (or fake) that reports results without running anything. "
            "Every other check would judge events against work that did not happen")


def _measure(h: SchedulerHarness, tasks: list[QueuedTask], heartbeat: float) -> Calibration:
    journal = h.journal()
    starts, reports, trips = [], [], []
    for task in tasks:
        event = h.terminal_events(task.key)[0]
        runs = journal.runs_of(task.task_id)
        trips.append(event.at - task.queued_at)
        if runs:
            starts.append(runs[0].started - task.queued_at)
            if runs[0].finished is not None:
                reports.append(max(0.0, event.at - runs[0].finished))
    return Calibration(round_trip=max(trips), start_latency=max(starts, default=0.0),
                       report_latency=max(reports, default=0.0), heartbeat=heartbeat, pace=machine_pace(),
                       samples=len(tasks))


def _diagnose(h: SchedulerHarness, tasks: list[QueuedTask], stage: str) -> tuple[str, bool]:
    """One sentence from the journal: what happened to the tasks, and what that means; and whether it
    stops the run (nothing can complete) or names a defect other checks judge (tasks launched repeatedly)."""
    journal = h.journal()
    waiting = [t for t in tasks if not h.terminal_events(t.key)]
    started = [t for t in waiting if journal.runs_of(t.task_id)]
    finished = [t for t in started if journal.finished(t.task_id)]
    launches = {t.task_id: len(journal.runs_of(t.task_id)) for t in tasks}
    if any(n > 1 for n in launches.values()):
        tracked = sum(1 for t in tasks if t.key in h.executor.running)
        return (f"tasks were launched more than once while {stage} (runs per task {launches}; {tracked} of "
                f"{len(tasks)} tracked in running) and {len(waiting)} never got a terminal event: a started task "
                "must leave queued_tasks and be tracked in running until its event. The other checks run "
                "(lifecycle.at_most_once_per_try names it); the budgets are the floors", False)
    return _stopping_diagnosis(h, tasks, stage, journal, waiting, started, finished, launches), True


def _stopping_diagnosis(h: SchedulerHarness, tasks: list[QueuedTask], stage: str, journal: Any,
                        waiting: list[QueuedTask], started: list[QueuedTask], finished: list[QueuedTask],
                        launches: dict[str, int]) -> str:
    if not any(journal.runs_of(t.task_id) for t in tasks):
        return ("no task ever started: nothing reached the journal. The executor took the tasks (queue, heartbeat) "
                "but never ran them -- or ran them where the suite's environment is missing: a worker outside "
                "this process must inherit CONFORMANCE_JOURNAL_DIR and PYTHONPATH (the probe seam) from the "
                f"process that runs the scheduler; executor state: {_bookkeeping(h)}")
    if finished and len(finished) == len(waiting):
        return (f"tasks ran and ended, but no terminal event came back for {[t.task_id for t in finished]}: "
                "report each finished task with self.success(key) / self.fail(key) (or change_state) from sync(); "
                f"runs per task: {launches}")
    return (f"while {stage}, {len(started)} of {len(waiting)} waiting tasks started and {len(finished)} ended "
            f"before the budget ran out; runs per task {launches}; executor state: {_bookkeeping(h)}")


def _bookkeeping(h: SchedulerHarness) -> str:
    ex = h.executor
    parts = []
    for name in ("queued_tasks", "running", "event_buffer"):
        try:
            parts.append(f"{name}={len(getattr(ex, name))}")
        except Exception as exc:
            parts.append(f"{name} unreadable ({type(exc).__name__})")
    return ", ".join(parts)


def preflight_result(spec: CheckSpec, diagnosis: str, cut: bool = False,
                     teardown: tuple[str, ...] = ()) -> CheckResult:
    """The preflight's verdict from the run that calibrated the certification (it is not run twice);
    ``cut``: the run's ceiling ended it, so nothing was judged; ``teardown``: what tearing it down found,
    reported as the finding of the clause it breaks when the round trip itself passed."""
    if cut:
        return CheckResult(spec.id, Outcome.INCONCLUSIVE, f"[{spec.id}] {diagnosis}: the budget was exhausted by the "
                           "run's ceiling, not by the executor", cause="the --max-minutes ceiling was reached")
    if not diagnosis and teardown:
        message, cause = teardown_finding(spec, list(teardown))
        return CheckResult(spec.id, Outcome.FAILED, message, cause=cause)
    if not diagnosis:
        return CheckResult(spec.id, Outcome.PASSED)
    message = "\n".join([f"[{spec.id}] violates SPEC {spec.clause}: {spec.title}",
                          f"What the executor did: {diagnosis}",
                          f"What Airflow's scheduler expects: {spec.expects}", f"How to fix: {spec.fix}"])
    return CheckResult(spec.id, Outcome.FAILED, message, cause=f"preflight: {diagnosis}")
