"""SPEC E2E: the executor under a real Airflow scheduler (opt-in: ``--e2e`` or ``-m e2e``).

Each check triggers one DAG run of the probe DAGs (``conformance.e2e.probe_dags``) in the session's
deployment and judges it twice: by the database (what Airflow recorded) and by the journal the task
code wrote (what really ran, and when).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from conformance.e2e.deployment import PARALLELISM, Deployment, Run, SchedulerDied, TaskRow, describe_tasks
from conformance.e2e.probe_dags import CRASH_TASKS, DEADLINE_DAG, PARALLEL_TASKS, SENSOR_POKES
from conformance.e2e.services import E2ESetupError
from conformance.groundtruth.journal import Journal, pid_alive
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.outcomes import ConformanceFailure
from conformance.harness.timing import WaitTimedOut

#: the stuck scenario's [scheduler] task_queued_timeout, in seconds
STUCK_TIMEOUT = 4


@contextmanager
def _deployment(ctx: CheckContext) -> Iterator[Deployment]:
    """The shared deployment; waits that time out and a dying scheduler become this check's failure."""
    from conformance.e2e.shared import NotConfigurable, NotStartable, deployment_for

    try:
        deployment = deployment_for(ctx.profile, ctx.sandbox, ctx.time.scale)
    except NotStartable as exc:
        raise ctx.not_supported(str(exc)) from None
    except NotConfigurable as exc:
        raise ctx.fail(str(exc)) from None
    except SchedulerDied as exc:
        raise ctx.fail(f"a real scheduler running this executor died: {exc}") from None
    except E2ESetupError as exc:
        raise ConformanceFailure(f"[{ctx.spec.id}] the e2e deployment could not be started: {exc}") from None
    try:
        yield deployment
    except (WaitTimedOut, SchedulerDied) as exc:
        raise ctx.fail(str(exc)) from None


def _run_to_end(deployment: Deployment, dag_id: str, deadline: float = 120) -> tuple[str, dict[str, TaskRow], Journal]:
    """Trigger one run of ``dag_id`` and wait for it: its final state, task rows and journal."""
    run = deployment.trigger(dag_id)
    state = deployment.wait_for_run(run, deadline)
    return state, deployment.tasks(run), deployment.journal(run)


@check("e2e.dag_run_completes", clause="E2E-1",
       title="a DAG run completes under the real scheduler with the right task states",
       expects="The scheduler queues each task once its upstream succeeded and the executor runs it; every task "
               "ends SUCCESS, a downstream task starts only after its upstream ended, and a poke-mode "
               "sensor keeps its slot until it succeeds.",
       fix="Run the command/workload the scheduler queued (execute_async on 2.x, _process_workloads on 3.x) and "
           "report its terminal state; read the scheduler log in the message.")
def dag_run_completes(ctx: CheckContext) -> None:
    """cfe_complete: first >> second, and a sensor that succeeds on its third poke; all must succeed."""
    with _deployment(ctx) as deployment:
        state, tasks, journal = _run_to_end(deployment, "cfe_complete")
        runs = journal.runs_by_task()
        pokes = journal.entries("poke")
        ctx.expect(state == "success" and all(t.state == "success" for t in tasks.values()),
                   f"the DAG run ended {state}: {describe_tasks(tasks)}")
        ctx.expect(all(len(runs.get(t, [])) == 1 for t in ("first", "second")),
                   f"each task must run exactly once; journal runs: "
                   f"{ {t: len(v) for t, v in runs.items()} }")
        first, second = runs["first"][0], runs["second"][0]
        ctx.expect(first.finished is not None and second.started >= first.finished,
                   "the downstream task 'second' started before its upstream 'first' ended")
        ctx.expect(len(pokes) >= SENSOR_POKES, f"the sensor succeeded after {len(pokes)} pokes, "
                   f"its callable returns True only on poke {SENSOR_POKES}")


@check("e2e.failed_task_retries_honoured", clause="E2E-2",
       title="a failing task ends FAILED after its retries, each try run once",
       expects="A task that fails is retried by the scheduler with a new try number and run again by the "
               "executor; after its last retry it ends FAILED and the DAG run fails.",
       fix="Key everything by the full TaskInstanceKey including try_number: a retry is a new key and must "
           "be run even though the previous try of the same task was seen before.")
def failed_task_retries_honoured(ctx: CheckContext) -> None:
    """cfe_retries: one task that always fails, retries=1: two runs (tries 1 and 2), then FAILED."""
    with _deployment(ctx) as deployment:
        state, tasks, journal = _run_to_end(deployment, "cfe_retries", deadline=90)
        runs = journal.runs_of("always_fails")
        ctx.expect(state == "failed" and tasks["always_fails"].state == "failed",
                   f"the DAG run ended {state}: {describe_tasks(tasks)}")
        tries = sorted(r.try_number or 0 for r in runs)
        ctx.expect(tries == [1, 2], f"the task ran with tries {tries}; with retries=1 it must run once with "
                                    "try 1 and once with try 2")


@check("e2e.parallelism_respected", clause="E2E-3",
       title="under the real scheduler no more tasks run at once than the executor's parallelism",
       expects="The scheduler queues no more than executor.slots_available (parallelism minus running minus "
               "queued); an executor whose running/queued_tasks are truthful never runs more than "
               "[core] parallelism tasks at once.",
       fix="Keep each key in self.running from dispatch until its terminal event (success()/fail()), and "
           "take [core] parallelism as the default (do not hard-code a parallelism in __init__).")
def parallelism_respected(ctx: CheckContext) -> None:
    """cfe_parallel: six tasks that each hold for a while with [core] parallelism = 3."""
    limit = min(PARALLELISM, ctx.build(parallelism=PARALLELISM).parallelism or PARALLELISM)
    with _deployment(ctx) as deployment:
        state, tasks, journal = _run_to_end(deployment, "cfe_parallel", deadline=150)
        runs = journal.runs
        ctx.expect(state == "success", f"the DAG run ended {state}: {describe_tasks(tasks)}")
        ctx.expect(len(runs) == PARALLEL_TASKS, f"{len(runs)} task runs for {PARALLEL_TASKS} tasks")
        peak = journal.max_concurrency()
        ctx.expect(peak <= limit, f"{peak} tasks ran at once; [core] parallelism is {PARALLELISM} and the "
                                  f"executor's parallelism allows {limit}")


def _adopted_or_rerun(deployment: Deployment, run: Run, crashed: set[str], new_job: int,
                      crashed_at: float) -> Callable[[], bool]:
    def settled() -> bool:
        tasks = deployment.tasks(run)
        runs = deployment.journal(run).runs_by_task()
        return all((tasks[t].state == "running" and tasks[t].queued_by_job_id == new_job)
                   or any(r.started > crashed_at for r in runs.get(t, []))
                   for t in crashed)
    return settled


@check("e2e.scheduler_crash_recovery", clause="E2E-4",
       title="after a scheduler is SIGKILLed, a new one adopts running tasks or resets and re-runs them",
       expects="adopt_or_reset_orphaned_tasks of the new scheduler hands the dead scheduler's running TIs to "
               "try_adopt_task_instances: an executor that can adopt keeps them (they finish once, without a "
               "re-run); the rest are reset and run again. Either way the DAG run succeeds.",
       fix="In try_adopt_task_instances adopt exactly the TIs whose work is still alive (external_executor_id "
           "identifies it), track them like your own, and return the others; an executor that cannot adopt "
           "must not override it.")
def scheduler_crash_recovery(ctx: CheckContext) -> None:
    """cfe_crash: two tasks held until released; the scheduler is SIGKILLed while they run (one, for a
    single-threaded executor), a new one starts, then they are released. Judged by the journal (how often
    each task ran) and the database."""
    adopts = bool(ctx.can("adoption"))
    at_once = 1 if ctx.can("single_threaded") else CRASH_TASKS
    with _deployment(ctx) as deployment:
        run = deployment.trigger("cfe_crash")
        try:
            _crash_and_recover(ctx, deployment, run, adopts, at_once)
        finally:
            deployment.release(run)  # never leave held tasks behind for the next scenario


def _crash_and_recover(ctx: CheckContext, deployment: Deployment, run: Run, adopts: bool, at_once: int) -> None:
    def running() -> set[str]:
        started = set(deployment.journal(run).runs_by_task())
        return {t.task_id for t in deployment.tasks(run).values() if t.state == "running" and t.task_id in started}

    deployment.wait_for(lambda: len(running()) == at_once,
                        f"{at_once} cfe_crash task(s) to be running (run {run.run_id})", 90)
    crashed = running()
    crashed_at = time.monotonic()  # the journal's clock
    deployment.crash_scheduler()
    for task_id in deployment.tasks(run):
        if task_id not in crashed:  # not started yet: a single-threaded executor would run it inside
            deployment.release(run, task_id)  # the new scheduler's heartbeat and block adoption behind it
    deployment.start_scheduler()
    latest = deployment.latest_scheduler_job()
    new_job = int(latest["id"]) if latest else -1
    deployment.wait_for(_adopted_or_rerun(deployment, run, crashed, new_job, crashed_at),
                        f"the new scheduler to adopt or re-run the dead scheduler's tasks {sorted(crashed)}", 90)
    if not adopts and compat.is_airflow3():
        # Reset means the old attempt is over: the 3.x supervisor's heartbeat learns that the TI was
        # reset and stops it, unless the executor keeps it from doing so. (2.11's LocalTaskJob does
        # not: it swallows its own "PID of job runner does not match" once the re-run has started --
        # an Airflow issue, not the executor's; see reports/FINDINGS.md.)
        before = {r.pid: t for t, rs in deployment.journal(run).runs_by_task().items() for r in rs
                  if t in crashed and r.started <= crashed_at}
        try:
            deployment.wait_for(lambda: not any(pid_alive(pid) for pid in before),
                                "the dead scheduler's attempts to stop after their tasks were reset", 60)
        except WaitTimedOut:
            alive = sorted(t for pid, t in before.items() if pid_alive(pid))
            raise ctx.fail(f"60 s after the new scheduler reset {alive}, their pre-crash attempts were still "
                           "running next to the re-runs: two attempts of one task at once") from None
    deployment.release(run)
    state = deployment.wait_for_run(run)
    tasks = deployment.tasks(run)
    runs = deployment.journal(run).runs_by_task()
    ctx.expect(state == "success", f"after the crash the DAG run ended {state}: {describe_tasks(tasks)}")
    for task_id in sorted(crashed):
        task_runs = runs.get(task_id, [])
        after = [r for r in task_runs if r.started > crashed_at]
        if adopts:
            ctx.expect(len(task_runs) == 1,
                       f"{task_id} ran {len(task_runs)} times ({len(after)} after the crash): the executor "
                       "overrides try_adopt_task_instances but did not adopt a task whose process was alive")
            ctx.expect(tasks[task_id].queued_by_job_id == new_job,
                       f"{task_id} is not owned by the new scheduler (queued_by_job_id "
                       f"{tasks[task_id].queued_by_job_id}, new job {new_job})")
        elif not compat.is_airflow3() and tasks[task_id].state == "success" and any(
                r.outcome == "success" for r in task_runs):
            continue  # 2.x: the reset pre-crash attempt is not stopped (FINDINGS) and may finish first
        else:
            ctx.expect(any(r.outcome == "success" for r in after),
                       f"{task_id} was not re-run to success after the crash; the executor cannot adopt, so "
                       "the new scheduler must reset it and the executor run it again. Journal (crash at "
                       f"{crashed_at:.3f}): {[r.describe() for r in task_runs] or 'no run'}; task instances: "
                       f"{describe_tasks(tasks)}")


@check("e2e.stuck_in_queued_handled", clause="E2E-5", needs=("stuck_handling", "!single_threaded"),
       title="a task stuck in QUEUED is handed to the executor and leaves QUEUED; the scheduler survives",
       expects="After [scheduler] task_queued_timeout the scheduler calls revoke_task (3.x, 2.10+) or "
               "cleanup_stuck_queued_tasks (2.x) for the stuck TI, requeues it up to "
               "num_stuck_in_queued_retries times and then fails it. Only NotImplementedError is caught "
               "there: any other exception ends the scheduler.",
       fix="Make revoke_task/cleanup_stuck_queued_tasks stop the attempt (kill its process, revoke its "
           "message) and return normally; never let a backend error escape from them.")
def stuck_in_queued_handled(ctx: CheckContext) -> None:
    """cfe_stuck: its task cannot leave QUEUED (2.x: its process blocks parsing the DAG file; 3.x: the API
    server is frozen) while task_queued_timeout is 4 s; the TI must end FAILED with the scheduler alive."""
    with _deployment(ctx) as deployment:
        deployment.restart_scheduler(AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=str(STUCK_TIMEOUT))
        try:
            with deployment.task_start_held():
                run = deployment.trigger("cfe_stuck")
                deployment.wait_for(lambda: (deployment.tasks(run).get("stuck") or None) is not None
                                    and deployment.tasks(run)["stuck"].state == "failed",
                                    f"the stuck task to be revoked/cleaned up and failed (task_queued_timeout "
                                    f"{STUCK_TIMEOUT}s, one requeue)", 90)
            state = deployment.wait_for_run(run, deadline=60)
            ran = deployment.journal(run).runs_of("stuck")
            ctx.expect(state == "failed", f"the DAG run ended {state}")
            ctx.expect(not ran, f"the stuck task ran {len(ran)} time(s) although every attempt was revoked")
        finally:
            if deployment.scheduler is not None and deployment.scheduler.alive():
                deployment.restart_scheduler()
            else:
                deployment.start_scheduler()


@check("e2e.deadline_callback_runs", clause="E2E-6", needs=("callbacks",), applies=compat.has_other_workloads,
       applies_text="Airflow 3.3+ (executors run deadline callbacks)",
       title="a deadline callback the real scheduler sends runs once and its Callback row ends SUCCESS",
       expects="When a DAG run misses its deadline the scheduler creates a Callback row, queues an "
               "ExecuteCallback to the executor (before tasks) and sets the row's state from the executor's "
               "event for the CallbackKey; an executor that declares supports_callbacks must run it.",
       fix="Pop ExecuteCallback workloads from queued_callbacks in _process_workloads, run them "
           "(BaseExecutor.run_workload) and report self.success(key)/self.fail(key) with the CallbackKey.")
def deadline_callback_runs(ctx: CheckContext) -> None:
    """cfe_deadline: its deadline is one second after the run was queued, its task holds until released;
    the SyncCallback (conformance.e2e.callbacks.deadline_missed) must run once and its row end 'success'."""
    from conformance.e2e.callbacks import EVENT

    with _deployment(ctx) as deployment:
        run = deployment.trigger(DEADLINE_DAG)
        try:
            def ran() -> list[dict[str, object]]:
                return [e for e in Journal(deployment.root).entries(EVENT) if e.get("run_id") in (run.run_id, None)]

            try:
                deployment.wait_for(lambda: ran() and set(deployment.callback_states(run)) & {"success", "failed"},
                                    f"the deadline callback of {run.run_id} to run and its Callback row to end", 90)
            except WaitTimedOut as exc:
                raise ctx.fail(f"{exc}\nThe callback ran {len(ran())} time(s) (journal); its Callback row: "
                               f"{deployment.callback_states(run) or 'none (the deadline was not missed?)'}") from None
            states = deployment.callback_states(run)
            ctx.expect(states == ["success"], f"the Callback row of the missed deadline ended {states}, "
                                              f"although the callback ran {len(ran())} time(s) (journal)")
            ctx.expect(len(ran()) == 1, f"the deadline callback ran {len(ran())} times; it must run once")
        finally:
            deployment.release(run)
        deployment.wait_for_run(run)
