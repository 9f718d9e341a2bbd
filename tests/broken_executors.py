"""Deliberately broken executors: one small, realistic bug each (scikit-learn's negative controls).

Every catalogued check has at least one entry in ``NEGATIVE_CONTROLS``; ``test_negative_controls``
proves each check catches it, and ``test_every_check_has_a_negative_control`` keeps it that way.
Most are subclasses of the reference LocalExecutor with one method bent out of shape, so that the
check under test is the only thing that can notice.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

from airflow.executors.base_executor import BaseExecutor
from airflow.utils.state import TaskInstanceState

from conformance.harness import airflow_compat as compat
from conformance.harness.strategies import DAGS
from reference_executors import _bridge
from reference_executors._base import ReferenceExecutorBase
from reference_executors._pool import PooledTask
from reference_executors._process import FAILED, SUCCESS, new_external_id
from reference_executors.faults import StateDirectoryOutage
from reference_executors.local import LocalExecutor
from reference_executors.sequential import SequentialExecutor

# -- preflight --------------------------------------------------------------------------------------


class NeverReportsResults(LocalExecutor):
    """Runs every task but never turns a finished one into an event (success()/fail() never called)."""

    def _report(self, key: Any, state: str, info: str) -> None:
        pass


class HeartbeatRaises(LocalExecutor):
    """Its backend is down: every heartbeat raises (and would end the scheduler)."""

    def heartbeat(self) -> None:
        raise ConnectionRefusedError(111, "Connection refused (the executor's backend)")


# -- attributes -------------------------------------------------------------------------------------


class WronglyTypedAttributes(LocalExecutor):
    is_local = "yes"  # type: ignore[assignment]  # truthy, but not a bool


class ClaimsSingleThreaded(LocalExecutor):
    is_single_threaded = True  # but tasks overlap


class SerialButClaimsParallel(LocalExecutor):
    """Runs one task at a time in the background while claiming parallelism."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._backlog: list[tuple[Any, Any]] = []

    def _dispatch(self, key: Any, payload: Any) -> None:
        self._backlog.append((key, payload))

    def sync(self) -> None:
        super().sync()
        if self._backlog and not self._procs:
            key, payload = self._backlog.pop(0)
            LocalExecutor._dispatch(self, key, payload)


class BadSentryIntegration(LocalExecutor):
    sentry_integration = "conformance.no_such_module.SentryIntegration"  # package installed, module not


class ClaimsMultiTeam(LocalExecutor):
    supports_multi_team = True

    def __init__(self, parallelism: int = 32):  # no team_name
        super().__init__(parallelism=parallelism)


class LocalWithoutServeLogs(LocalExecutor):
    serve_logs = False


# -- heartbeat --------------------------------------------------------------------------------------


class NeverStarts(LocalExecutor):
    def _dispatch(self, key: Any, payload: Any) -> None:
        pass  # accepted, tracked, never started


class ForgetsRunning(LocalExecutor):
    """Like Airflow 3.0-3.3's LocalExecutor: in-flight work is not kept in ``running``."""

    def sync(self) -> None:
        super().sync()
        self.running.clear()


class DoubleSync(LocalExecutor):
    def heartbeat(self) -> None:
        super().heartbeat()
        self.sync()


class BlockingSync(LocalExecutor):
    def sync(self) -> None:
        for proc in list(self._procs.values()):
            proc.wait()
        super().sync()


class ReversedPriority(LocalExecutor):
    def order_queued_tasks_by_priority(self) -> Any:
        return list(reversed(list(super().order_queued_tasks_by_priority())))


class ReversedPrioritySequential(SequentialExecutor):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.parallelism = 4  # several dispatched per heartbeat, then run lowest priority first

    def order_queued_tasks_by_priority(self) -> Any:
        return list(reversed(list(super().order_queued_tasks_by_priority())))


class RaisesOnUnservedQueue(LocalExecutor):
    """Validates the queue while dispatching: a queue it has no worker for raises out of heartbeat()."""

    def execute_async(self, key: Any, command: Any, queue: str | None = None, executor_config: Any = None) -> None:
        _refuse_unserved(queue)
        super().execute_async(key, command, queue, executor_config)

    def _process_workloads(self, workloads: Any) -> None:
        for workload in workloads:
            _refuse_unserved(getattr(workload.ti, "queue", "default"))
        super()._process_workloads(workloads)


def _refuse_unserved(queue: str | None) -> None:
    if queue not in (None, "default"):
        raise ValueError(f"no worker serves queue {queue!r}")


class ChattySync(LocalExecutor):
    """Emits a heartbeat 'event' for a key nobody queued."""

    def sync(self) -> None:
        super().sync()
        from airflow.models.taskinstancekey import TaskInstanceKey

        self.event_buffer[TaskInstanceKey("executor_internal", "heartbeat", "r", 1, -1)] = (
            TaskInstanceState.RUNNING, None)


# -- lifecycle --------------------------------------------------------------------------------------


class NeedsArguments(LocalExecutor):
    def __init__(self, endpoint: str, parallelism: int = 32):
        super().__init__(parallelism=parallelism)
        self.endpoint = endpoint


class EndDoesNotWait(LocalExecutor):
    """Neither waits in end() nor can a later scheduler adopt what it left running."""

    try_adopt_task_instances = BaseExecutor.try_adopt_task_instances

    def end(self) -> None:
        pass


class TerminateDoesNothing(LocalExecutor):
    def terminate(self) -> None:
        pass


class RunsTwiceIfQueuedTwice(LocalExecutor):
    """Starts a duplicate copy whenever a key is queued while already queued or running."""

    def _again(self, key: Any, payload: Any) -> None:
        if key in self.queued_tasks or key in self._procs:
            self._launch(key, new_external_id("dup"), payload)

    def queue_command(self, task_instance: Any, command: Any, priority: int = 1, queue: Any = None) -> None:
        self._again(task_instance.key, list(command))
        super().queue_command(task_instance, command, priority, queue)

    def queue_workload(self, workload: Any, session: Any = None) -> None:
        self._again(workload.ti.key, workload)
        super().queue_workload(workload, session)


class DispatchesRequeuedImmediately(LocalExecutor):
    """Like 3.3's base + LocalExecutor: a key queued again while running is started right away."""

    def sync(self) -> None:
        super().sync()
        self.running.clear()  # so that 2.x's base does not hold the re-queued key back either

    def _dispatch(self, key: Any, payload: Any) -> None:
        if key in self._procs:  # a process of its own, forked right here: the overlap starts at once
            ReferenceExecutorBase._launch(self, key, new_external_id("again"), payload)
            return
        super()._dispatch(key, payload)


class RunsEachTaskTwice(LocalExecutor):
    def _dispatch(self, key: Any, payload: Any) -> None:
        super()._dispatch(key, payload)
        self._launch(key, new_external_id("extra"), payload)


class OneShotExecutor(LocalExecutor):
    """Keeps its 'started' flag on the class: a second instance in the same process refuses to start."""

    started_once = False

    def start(self) -> None:
        if type(self).started_once:
            raise RuntimeError("executor already started in this process")
        type(self).started_once = True
        super().start()


# -- events -----------------------------------------------------------------------------------------


class AlwaysSuccess(LocalExecutor):
    def _report(self, key: Any, state: str, info: str) -> None:
        super()._report(key, SUCCESS, info)


class StringStates(LocalExecutor):
    def _report(self, key: Any, state: str, info: str) -> None:
        self.change_state(key, state, info)  # "success"/"failed" strings, not TaskInstanceState


class ReportsUpForRetry(LocalExecutor):
    """Reports a failed task UP_FOR_RETRY, 'to help the scheduler retry it': a state only the scheduler
    may set (it decides retries from the task's retries and try number)."""

    def _report(self, key: Any, state: str, info: str) -> None:
        if state == FAILED:
            self.change_state(key, TaskInstanceState.UP_FOR_RETRY, info)
        else:
            super()._report(key, state, info)


class FilterIgnored(LocalExecutor):
    def get_event_buffer(self, dag_ids: Any = None) -> dict[Any, Any]:
        return super().get_event_buffer()


class RunningAfterTerminal(LocalExecutor):
    """Re-announces RUNNING for tasks that already finished (a late status poll)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._finished: list[Any] = []

    def _report(self, key: Any, state: str, info: str) -> None:
        super()._report(key, state, info)
        self._finished.append(key)

    def heartbeat(self) -> None:
        # the heartbeat after the one that reported the task: its terminal event was read in between
        late, self._finished = self._finished, []
        super().heartbeat()
        for key in late:
            self.event_buffer[key] = (TaskInstanceState.RUNNING, "late-status")


class StrictChangeState(LocalExecutor):
    def change_state(self, key: Any, state: Any, info: Any = None, remove_running: bool = True) -> None:
        if remove_running:
            self.running.remove(key)  # KeyError for keys the scheduler injects
        super().change_state(key, state, info, remove_running=False)


# -- CLI and logs -----------------------------------------------------------------------------------


class CollidingCliCommands(LocalExecutor):
    @staticmethod
    def get_cli_commands() -> list[Any]:
        from airflow.cli.cli_config import ActionCommand, GroupCommand

        return [GroupCommand(name="tasks", help="shadows airflow tasks", subcommands=(
            ActionCommand(name="list", help="x", func=lambda args: None, args=()),))]


class RaisingTaskLog(LocalExecutor):
    def get_task_log(self, ti: Any, try_number: int) -> tuple[list[str], list[str]]:
        messages, logs = super().get_task_log(ti, try_number)
        if not logs:
            raise FileNotFoundError(f"no log for {ti.key}")
        return messages, logs


# -- stuck in queued --------------------------------------------------------------------------------


class RevokeNoop(LocalExecutor):
    def revoke_task(self, *, ti: Any) -> None:
        pass


class RevokeEmitsEvent(LocalExecutor):
    def revoke_task(self, *, ti: Any) -> None:
        super().revoke_task(ti=ti)
        self.fail(ti.key, "revoked")


class RevokeRaisesForUnknown(LocalExecutor):
    def revoke_task(self, *, ti: Any) -> None:
        if ti.key not in self.queued_tasks and ti.key not in self._procs:
            raise KeyError(ti.key)
        super().revoke_task(ti=ti)


class RevokeLeavesRunning(LocalExecutor):
    def revoke_task(self, *, ti: Any) -> None:
        was_running = ti.key in self.running
        super().revoke_task(ti=ti)
        if was_running:
            self.running.add(ti.key)


class RemembersRevoked(LocalExecutor):
    """Blocks a revoked dag/task for good: its next try is accepted but never started."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._blocked: set[tuple[str, str]] = set()

    def revoke_task(self, *, ti: Any) -> None:
        super().revoke_task(ti=ti)
        self._blocked.add((ti.dag_id, ti.task_id))

    def _dispatch(self, key: Any, payload: Any) -> None:
        if (key.dag_id, key.task_id) not in self._blocked:
            super()._dispatch(key, payload)


class CleanupReturnsNone(LocalExecutor):
    def revoke_task(self, *, ti: Any) -> None:
        raise NotImplementedError

    def cleanup_stuck_queued_tasks(self, tis: list[Any]) -> Any:
        for ti in tis:
            self.queued_tasks.pop(ti.key, None)
        return None


class CleanupLeavesQueued(LocalExecutor):
    def revoke_task(self, *, ti: Any) -> None:
        raise NotImplementedError

    def cleanup_stuck_queued_tasks(self, tis: list[Any]) -> list[str]:
        return [repr(ti) for ti in tis]  # ... and the tasks still start


# -- adoption ---------------------------------------------------------------------------------------


class AdoptRaisesOnForeign(LocalExecutor):
    def try_adopt_task_instances(self, tis: Any) -> Any:
        for ti in tis:
            if not ti.external_executor_id:
                raise ValueError(f"{ti.key} has no external_executor_id")
        return super().try_adopt_task_instances(tis)


class AdoptReturnsStrangers(LocalExecutor):
    def try_adopt_task_instances(self, tis: Any) -> Any:
        return [copy.copy(ti) for ti in super().try_adopt_task_instances(tis)]


class ClaimsForeignAdoption(LocalExecutor):
    """Leaves every TI with an external id out of the result (claims it) without looking for its work."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        return [ti for ti in tis if not ti.external_executor_id]


class AdoptsNothing(LocalExecutor):
    """Overrides try_adopt_task_instances only to log: it hands everything back, like the base class.
    Its override must not make it count as an executor that adopts (confirmed by behaviour)."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        self.log.info("not adopting %d task instances", len(tis))
        return list(tis)


class AdoptReturnsAdopted(LocalExecutor):
    def try_adopt_task_instances(self, tis: Any) -> Any:
        not_adopted = super().try_adopt_task_instances(tis)
        return [ti for ti in tis if ti not in not_adopted]


class AdoptNeverReports(LocalExecutor):
    def try_adopt_task_instances(self, tis: Any) -> Any:
        return [ti for ti in tis if not ti.external_executor_id]  # claims them, tracks nothing


class AdoptReruns(LocalExecutor):
    """Adopts by starting the work again instead of attaching to it."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        not_adopted = list(super().try_adopt_task_instances(tis))
        for ti in tis:
            if ti not in not_adopted and ti.key in self._procs:
                del self._procs[ti.key]
                self.running.discard(ti.key)
                self.queued_tasks[ti.key] = _requeue_payload(ti)
        return not_adopted


class AdoptTwiceHandsBack(LocalExecutor):
    def try_adopt_task_instances(self, tis: Any) -> Any:
        known = [ti for ti in tis if ti.key in self._procs]
        return known + list(super().try_adopt_task_instances([ti for ti in tis if ti.key not in self._procs]))


class ReportsUnadopted(LocalExecutor):
    """Hands back what it cannot adopt, but keeps tracking it and reports it failed later."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        not_adopted = list(super().try_adopt_task_instances(tis))
        for ti in not_adopted:
            self.fail(ti.key, "lost")
        return not_adopted


def _requeue_payload(ti: Any) -> Any:
    from conformance.harness import airflow_compat as compat

    handle = compat.make_task(ti.dag_id, ti.task_id, ti.run_id, try_number=ti.key.try_number)
    if _bridge.IS_AIRFLOW3:
        return handle.workload
    return (handle.command, 1, "default", handle.ti)


# -- caught only by the state machine ---------------------------------------------------------------


class DropsEventWhenTwoRunTogether(LocalExecutor):
    """Loses the terminal event of a task of one dag that ran while another task was in flight."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._victims: set[Any] = set()

    def _dispatch(self, key: Any, payload: Any) -> None:
        super()._dispatch(key, payload)
        if len(self._procs) >= 2:
            self._victims |= {k for k in self._procs if getattr(k, "dag_id", None) == DAGS[2]}

    def _report(self, key: Any, state: str, info: str) -> None:
        if key in self._victims:
            self._victims.discard(key)
            self.running.discard(key)  # bookkeeping is tidy; the event is simply never sent
            return
        super()._report(key, state, info)


class ExceedsParallelismAfterRevoke(LocalExecutor):
    """Revoking frees two slots: another running key is dropped from ``running`` too."""

    def revoke_task(self, *, ti: Any) -> None:
        super().revoke_task(ti=ti)
        if self.running:
            self.running.pop()


class DuplicateEventAfterMultiDagFilter(LocalExecutor):
    """``get_event_buffer`` with several dags copies the matching events instead of popping them."""

    def get_event_buffer(self, dag_ids: Any = None) -> dict[Any, Any]:
        if dag_ids is not None and len(dag_ids) > 1:
            return {k: v for k, v in self.event_buffer.items() if getattr(k, "dag_id", None) in dag_ids}
        return super().get_event_buffer(dag_ids)


class ReReportsWorkloadWithNextTask(LocalExecutor):
    """A finished callback or connection test stays in its bookkeeping and is reported SUCCESS once more
    with the first task reported in a later heartbeat: two terminal events for one workload (3.3+)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stale: tuple[Any, int] | None = None
        self._reads = 0

    def _report_finished(self) -> None:
        self._reads += 1
        super()._report_finished()

    def _report(self, key: Any, state: str, info: str) -> None:
        super()._report(key, state, info)
        if not hasattr(key, "dag_id"):
            self._stale = (key, self._reads)
        elif self._stale is not None and self._stale[1] < self._reads:
            stale, self._stale = self._stale[0], None
            self.success(stale, "stale")


# -- backend faults (SPEC HB-5), injected by reference_executors.faults.StateDirectoryOutage -----------


class _FileVerdictLocal(LocalExecutor):
    """The reference LocalExecutor with a process per task whose verdict the executor reads from the state
    directory (``ReferenceExecutorBase._launch``), not from a worker's pipe: the outage of
    ``StateDirectoryOutage`` then hits the executor's own reads and writes, which these controls mishandle."""

    _launch = ReferenceExecutorBase._launch


class BackendErrorEscapes(_FileVerdictLocal):
    """Starts tasks without guarding the backend call: the outage's OSError leaves heartbeat()."""

    def _dispatch(self, key: Any, payload: Any) -> None:
        external_id = new_external_id("escapes")
        self._procs[key] = self._launch(key, external_id, payload)
        _bridge.report_running(self, key, external_id)


class GuessesVerdictInOutage(_FileVerdictLocal):
    """A process that exited while its verdict cannot be read is assumed to have failed."""

    def sync(self) -> None:
        self._start_held_runs()
        for key, proc in list(self._procs.items()):
            outcome = proc.poll()
            if outcome is None and proc.exit_status is not None:
                outcome = (FAILED, "exited, verdict unreadable: assumed failed")
            if outcome is not None:
                del self._procs[key]
                self._report(key, *outcome)


# -- e2e: under a real scheduler (started by dotted path: these classes must stay module-level) --------


class ReportsSuccessWithoutRunning(LocalExecutor):
    """Fire and forget: the submission's success is reported as the task's, and nothing runs."""

    def _dispatch(self, key: Any, payload: Any) -> None:
        self.success(key, "submitted")


class ForgetsRetries(LocalExecutor):
    """De-duplicates submissions by task and run, without the try number: a retry is refused as a
    duplicate and reported failed without running."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._submitted: set[tuple[Any, ...]] = set()

    def _dispatch(self, key: Any, payload: Any) -> None:
        identity = (key.dag_id, key.task_id, key.run_id, key.map_index)
        if identity in self._submitted:
            self.fail(key, "duplicate submission refused")
            return
        self._submitted.add(identity)
        super()._dispatch(key, payload)


class UntrackedRunning(LocalExecutor):
    """Drops started tasks from ``running`` (as Airflow 3.3's own LocalExecutor never adds them): the
    scheduler's global cap, [core] parallelism minus slots_occupied, then never closes."""

    def sync(self) -> None:
        super().sync()
        self.running.difference_update(self._procs)


class DeclinesAdoption(LocalExecutor):
    """Overrides ``try_adopt_task_instances`` but hands every TI back, though its processes live on."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        return list(tis)


class SequentialDeclinesAdoption(SequentialExecutor):
    """A positive control: single-threaded, overrides ``try_adopt_task_instances`` only to hand every TI back
    (what BaseExecutor does). It adopts nothing, which is its right: the ADOPT checks are not supported."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        return list(tis)


class StuckHandlingRaises(LocalExecutor):
    """A backend error escapes from revoke/cleanup: the scheduler catches only NotImplementedError."""

    def revoke_task(self, *, ti: Any) -> None:
        raise RuntimeError("backend unavailable while revoking")

    def cleanup_stuck_queued_tasks(self, tis: list[Any]) -> list[str]:
        raise RuntimeError("backend unavailable while cleaning up")



# -- clauses reached since: each re-creates a real executor bug (issue "six uncovered clauses") ----------


class EndHangsWhenAdopting(LocalExecutor):
    """Adopts (so LIFE-1's waiting does not apply to it) and its end() waits for a backend acknowledgement
    that never comes: scheduler shutdown hangs."""

    def end(self) -> None:
        threading.Event().wait()


class StartsOnlyWhenQueueOutnumbersRunning(LocalExecutor):
    """Starts queued work only while more tasks are queued than running: fine on an idle executor, but
    with tasks in flight the newly queued ones wait although slots are free."""

    def trigger_tasks(self, open_slots: int) -> None:
        if len(self.queued_tasks) <= len(self.running):
            return
        super().trigger_tasks(open_slots)


class WorkerDeathReportedSuccess(LocalExecutor):
    """A worker that ended without writing a verdict (killed by a signal) is taken to have succeeded."""

    def _report(self, key: Any, state: str, info: str) -> None:
        if "without a verdict" in info:
            state = SUCCESS
        super()._report(key, state, info)


class StopsReportingAtUnreadableResult(LocalExecutor):
    """The result loop gives up (until the next heartbeat, where the same happens) at the first task whose
    result cannot be read: every task after it in the loop is never reported."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._unreadable: set[Any] = set()

    def _report_finished(self) -> None:
        self._start_held_runs()
        news = self._pool.news()
        for key, proc in list(self._procs.items()):
            if key in self._unreadable:
                return  # "cannot read the result; will retry": the same happens at every heartbeat
            if isinstance(proc, PooledTask) and proc.pool is self._pool and proc.external_id not in news:
                continue
            outcome = proc.poll()
            if outcome is None:
                continue
            if "without a verdict" in outcome[1]:
                self._unreadable.add(key)
                return
            del self._procs[key]
            proc.forget()
            self._report(key, *outcome)

    def end(self) -> None:
        """Bounded (the defect is in reading results alone): wait for the processes, read once."""
        for key, proc in list(self._procs.items()):
            if key not in self._unreadable:
                proc.finish()
        self._report_finished()
        self._pool.shutdown()


class ZeroParallelismRunsNothing(LocalExecutor):
    """Accepts parallelism 0 (Airflow 3's base would refuse it) and computes open slots as parallelism minus
    running, without Airflow 2's "0 means unlimited": nothing ever starts."""

    def __init__(self, parallelism: int | None = None, **kwargs: Any):
        super().__init__(parallelism=parallelism or 1, **kwargs)
        if parallelism == 0:
            self.parallelism = 0

    def trigger_tasks(self, open_slots: int) -> None:
        free = self.parallelism - len(self.running)
        if free > 0:
            super().trigger_tasks(free)


class LocalButSaysRemote(LocalExecutor):
    """Forks every task on the scheduler's host but declares itself remote."""

    is_local = False
    serve_logs = False


# -- callbacks and connection tests (Airflow 3.3) ---------------------------------------------------------


class CallbacksDeclaredButDropped(LocalExecutor):
    """Declares callbacks and takes them off the queue, but never runs them."""

    supports_callbacks = True

    def _process_workloads(self, workloads: Any) -> None:
        callbacks = [w for w in workloads if type(w).__name__ == "ExecuteCallback"]
        for workload in callbacks:
            self.queued_callbacks.pop(workload.key, None)
        super()._process_workloads([w for w in workloads if w not in callbacks])


class CallbackReportedAsTaskState(LocalExecutor):
    """Runs callbacks but reports them with TaskInstanceState, which the scheduler does not read for them."""

    supports_callbacks = True

    def _report(self, key: Any, state: str, info: str) -> None:
        if type(key).__name__ == "CallbackKey":
            self.change_state(key, TaskInstanceState.SUCCESS if state == SUCCESS else TaskInstanceState.FAILED,
                              info)
            return
        super()._report(key, state, info)


class AcceptsUndeclaredConnectionTests(LocalExecutor):
    """Says it cannot test connections, yet queue_workload stores them instead of refusing: nothing runs
    them (the base only dispatches connection tests for executors that declare them)."""

    supports_connection_test = False

    def queue_workload(self, workload: Any, session: Any = None) -> None:
        if type(workload).__name__ == "TestConnection":
            self.queued_connection_tests[workload.key] = workload
            return
        super().queue_workload(workload, session)


# -- unseen defect classes (issue "catch the defects nobody described"): each one a bug real executors
# -- shipped, which the hand-made scenarios of before certified ----------------------------------------


class DropsUnservedQueue(LocalExecutor):
    """Serves only the ``default`` queue and drops anything else: the task leaves ``queued_tasks``, is not in
    ``running`` and no event ever comes (nothing raises, so "does not raise" alone passes it)."""

    SERVED = "default"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._dropped: set[Any] = set()

    def execute_async(self, key: Any, command: Any, queue: str | None = None, executor_config: Any = None) -> None:
        if queue not in (None, self.SERVED):
            self.log.warning("no worker serves queue %s: dropping %s", queue, key)
            self._dropped.add(key)  # the 2.x base adds it to running after we return: undone in sync
            return
        super().execute_async(key, command, queue, executor_config)

    def _process_workloads(self, workloads: Any) -> None:
        served = []
        for workload in workloads:
            ti = getattr(workload, "ti", None)
            if ti is not None and getattr(ti, "queue", self.SERVED) != self.SERVED:
                self.queued_tasks.pop(ti.key, None)
                continue
            served.append(workload)
        super()._process_workloads(served)

    def sync(self) -> None:
        self.running -= self._dropped
        super().sync()


class RebuildsKeyFromNames(LocalExecutor):
    """Reports each result under a key rebuilt from the dag, task and run names and the try number (as an
    executor that round-trips keys through its backend's job name does): a mapped TI's map index is lost."""

    def _report(self, key: Any, state: str, info: str) -> None:
        rebuilt = compat.make_key(key.dag_id, key.task_id, key.run_id, key.try_number) \
            if hasattr(key, "dag_id") else key
        self.running.discard(key)
        super()._report(rebuilt, state, info)


class LateRunningAfterTerminal(LocalExecutor):
    """A status poller that lags: once ``LAG`` further tasks have finished after a task's terminal event, it
    announces RUNNING for that task once more (the stale status of a poll cycle that wrapped around).

    The lag is counted in finished tasks, not heartbeats, so whether a short scenario sees it does not
    depend on how many heartbeats a busy machine needs: no contract check puts this many tasks through one
    executor, a generated programme does."""

    LAG = 12

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._reported = 0
        self._finished: list[tuple[Any, int]] = []

    def _report(self, key: Any, state: str, info: str) -> None:
        super()._report(key, state, info)
        if hasattr(key, "dag_id"):
            self._reported += 1
            self._finished.append((key, self._reported))

    def sync(self) -> None:
        stale = [key for key, at in self._finished if self._reported - at >= self.LAG]
        self._finished = [(key, at) for key, at in self._finished if self._reported - at < self.LAG]
        for key in stale:
            self.event_buffer[key] = (TaskInstanceState.RUNNING, "stale poll")
        super().sync()


class BatchStopsAtKeyInFlight(LocalExecutor):
    """Takes a heartbeat's whole batch off ``queued_tasks`` first, then gives up on the rest of the batch at a
    key that is still in flight (queued again while running): the tasks after it are lost."""

    def trigger_tasks(self, open_slots: int) -> None:
        if _bridge.IS_AIRFLOW3 and (getattr(self, "queued_callbacks", None) or {}):
            super().trigger_tasks(open_slots)  # callbacks take the base's path
            return
        batch = self.order_queued_tasks_by_priority()[:open_slots]
        for key, _ in batch:
            self.queued_tasks.pop(key, None)
        for key, item in batch:
            if key in self._procs:
                self.log.error("%s is already running: abandoning this batch", key)
                return
            self.running.add(key)
            self._dispatch(key, item if _bridge.IS_AIRFLOW3 else list(item[0]))


class EndWaitsForQueuedWork(LocalExecutor):
    """end() waits until nothing is queued or running -- but it no longer starts queued work, so with a task
    still waiting for a slot it never returns (scheduler shutdown hangs)."""

    def end(self) -> None:
        pause = threading.Event()
        while self.queued_tasks or self._procs or self._held:
            self.sync()
            pause.wait(0.05)
        self._pool.shutdown()


class RelaunchesEveryHeartbeat(LocalExecutor):
    """Never takes a started task off ``queued_tasks`` nor tracks it in ``running``, and reports only what it
    tracks: every heartbeat launches the same tasks again, and no event ever comes."""

    def trigger_tasks(self, open_slots: int) -> None:
        for key, item in self.order_queued_tasks_by_priority()[:open_slots]:
            if key not in self._procs:
                self._dispatch(key, item if _bridge.IS_AIRFLOW3 else list(item[0]))

    def _report(self, key: Any, state: str, info: str) -> None:
        if key in self.running:
            super()._report(key, state, info)


class SlotsAvailableIsAMethod(LocalExecutor):
    """``slots_available`` written as a method, not a property: the scheduler compares the bound method with
    an int (TypeError) in the loop that queues work."""

    def slots_available(self) -> int:  # type: ignore[override]
        return self.parallelism - len(self.running) - len(self.queued_tasks)


# -- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    executor: type
    #: a regular expression the check's message must match: the control fails *for the right reason*, not
    #: by accident (another clause, a teardown, a timeout)
    expect: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    advice: bool = False  # for ATTR-2a advice checks the control must produce advice, not a failure
    backend: Any = None  # a BackendDriver, for checks that inject backend faults

    @property
    def name(self) -> str:
        return self.executor.__name__


NEGATIVE_CONTROLS: dict[str, list[Control]] = {
    "preflight.task_runs_end_to_end": [
        Control(NeverReportsResults, "tasks ran and ended, but no terminal event came back"),
        Control(HeartbeatRaises, r"heartbeat\(\): raised ConnectionRefusedError"),
        Control(NeverStarts, "no task ever started"),
        Control(RelaunchesEveryHeartbeat, "launched more than once"),
        Control(ReportsSuccessWithoutRunning, "reported .* for tasks that never ran")],
    "surface.scheduler_members_answer": [Control(SlotsAvailableIsAMethod, r"slots_available: is <bound method")],
    "attributes.declared_with_types": [Control(WronglyTypedAttributes, r"is_local='yes' \(needs bool\)")],
    "attributes.single_threaded_never_overlaps": [Control(ClaimsSingleThreaded, "ran at the same time")],
    "attributes.parallel_executor_overlaps": [Control(SerialButClaimsParallel, "never in flight together")],
    "attributes.sentry_integration_importable": [Control(BadSentryIntegration, "does not import")],
    "attributes.multi_team_accepts_team_name": [Control(ClaimsMultiTeam, "unexpected keyword argument 'team_name'")],
    "attributes.serve_logs_goes_with_is_local": [Control(LocalWithoutServeLogs, "serve_logs is False",
                                                         advice=True)],
    "attributes.is_local_matches_where_tasks_run": [Control(LocalButSaysRemote, "descends from the scheduler",
                                                            advice=True)],
    "heartbeat.starts_queued_work_while_busy": [Control(StartsOnlyWhenQueueOutnumbersRunning,
                                                        "newly queued tasks did not all start")],
    "heartbeat.parallelism_zero_unlimited_or_refused": [Control(ZeroParallelismRunsNothing,
                                                                "accepted the value but did not start")],
    "lifecycle.end_returns_with_work_in_flight": [
        Control(EndHangsWhenAdopting, r"end\(\) did not return within"),
        Control(EndWaitsForQueuedWork, r"end\(\) did not return within")],
    "attributes.callbacks_declared_truthfully": [
        Control(CallbacksDeclaredButDropped, "the callback never ran"),
        Control(CallbackReportedAsTaskState, "is a TaskInstanceState, not a CallbackState")],
    "attributes.connection_tests_declared_truthfully": [Control(AcceptsUndeclaredConnectionTests,
                                                                "accepted the connection test instead of raising")],
    "events.dead_worker_reported_failed_others_reported": [
        Control(WorkerDeathReportedSuccess, "whose worker was killed: reported success"),
        Control(StopsReportingAtUnreadableResult, "ended but were never reported")],
    "heartbeat.triggers_queued_work": [Control(NeverStarts, "queued tasks did not start")],
    "heartbeat.respects_parallelism": [Control(ForgetsRunning, r"tasks were in flight with parallelism=2")],
    "heartbeat.slots_account_for_work": [Control(ForgetsRunning, "slots_occupied=0")],
    "heartbeat.sync_once_per_heartbeat": [Control(DoubleSync, r"called sync\(\) 6 times")],
    "heartbeat.does_not_block": [Control(BlockingSync, r"heartbeat\(\) did not return within")],
    "heartbeat.priority_order": [Control(ReversedPriority, "expected the 2 highest"),
                                 Control(ReversedPrioritySequential, "expected highest first")],
    "heartbeat.empty_heartbeat_changes_nothing": [Control(ChattySync, "after empty heartbeats: events=")],
    "heartbeat.unserved_queue_does_not_raise": [
        Control(RaisesOnUnservedQueue, "raised ValueError: no worker serves queue"),
        Control(DropsUnservedQueue, "it was dropped")],
    "lifecycle.constructible_without_arguments": [Control(NeedsArguments, "missing 1 required positional argument",
                                                          kwargs={"endpoint": "http://x"})],
    "lifecycle.end_waits_and_flushes": [Control(EndDoesNotWait, r"end\(\) returned while")],
    "lifecycle.terminate_stops_work": [Control(TerminateDoesNothing, r"after terminate\(\) these tasks still run")],
    "lifecycle.same_key_queued_twice_runs_once": [Control(RunsTwiceIfQueuedTwice, "queued twice, ran 2 times")],
    "lifecycle.requeued_while_running_never_overlaps": [Control(DispatchesRequeuedImmediately,
                                                                "ran 2 times at once")],
    "lifecycle.at_most_once_per_try": [
        Control(RunsEachTaskTwice, "launched the same try more than once"),
        Control(RelaunchesEveryHeartbeat, "launched the same try more than once.*tracked in running: 0")],
    "lifecycle.tracks_task_until_terminal": [Control(ForgetsRunning, "while the task runs: has_task=False")],
    "lifecycle.repeated_build_start_end": [Control(OneShotExecutor, "executor already started in this process")],
    "events.one_terminal_event_matching_journal": [Control(AlwaysSuccess, "reported success, expected one of")],
    "events.only_known_keys_and_states": [
        Control(StringStates, "is a str, not TaskInstanceState"),
        Control(ChattySync, "event for a key never queued"),
        Control(ReportsUpForRetry, "reported up_for_retry: an executor reports only")],
    "events.buffer_flush_and_dag_filter": [Control(FilterIgnored, r"get_event_buffer\(\['conformance_dag_a'\]\) "
                                                                  "returned")],
    "events.intermediate_states_precede_terminal": [Control(RunningAfterTerminal, "running after the terminal event")],
    "events.tolerates_unknown_keys": [Control(StrictChangeState, "raised KeyError")],
    "cli.commands_are_valid": [Control(CollidingCliCommands, "collide with Airflow's own commands")],
    "logs.get_task_log_shape": [Control(RaisingTaskLog, "raised FileNotFoundError")],
    "stuck.revoked_queued_task_never_starts": [Control(RevokeNoop, "started after it was revoked")],
    "stuck.revoke_adds_no_event_and_never_raises": [
        Control(RevokeEmitsEvent, "revoke_task changed the event buffer"),
        Control(RevokeRaisesForUnknown, "raised KeyError")],
    "stuck.revoked_running_task_untracked": [Control(RevokeLeavesRunning, "after revoke: in running=True")],
    "stuck.requeued_after_revoke_runs": [Control(RemembersRevoked, "SUCCESS event for the re-queued try")],
    "stuck.cleanup_returns_consumable": [Control(CleanupReturnsNone, "returned None, which the scheduler cannot"),
                                         Control(CleanupLeavesQueued, "the cleaned-up task started afterwards")],
    "adoption.returns_unadopted_subset": [
        Control(AdoptRaisesOnForeign, "has no external_executor_id"),
        Control(AdoptReturnsStrangers, "returned objects that were not in the input"),
        Control(ClaimsForeignAdoption, "but does not track them")],
    "adoption.adopted_tasks_finish_without_rerun": [
        Control(AdoptReturnsAdopted, "handed back 2 of 2 running tasks of its own kind"),
        Control(AdoptNeverReports, "adopted tasks not tracked by B"),
        Control(AdoptReruns, "adopted tasks not tracked by B")],
    "adoption.adopting_twice_is_idempotent": [Control(AdoptTwiceHandsBack, "handed it back as not adopted")],
    "adoption.unadopted_never_reported": [Control(ReportsUnadopted, "reported or tracks TIs it handed back")],
    "stateful.scheduler_action_sequences": [
        Control(DropsEventWhenTwoRunTogether, "work that ended has its terminal event|every queued task gets a "
                                              "terminal event|queued, running or reported"),
        Control(ExceedsParallelismAfterRevoke, "tracked \\(has_task\\)|never more than parallelism|slots_available|"
                                               "queued, running or reported"),
        Control(DuplicateEventAfterMultiDagFilter, "get_event_buffer pops what it returns|after its terminal event"),
        Control(DropsUnservedQueue, "every accepted workload is queued, running or reported|every queued task gets "
                                    "a terminal event"),
        Control(RebuildsKeyFromNames, "event keys are exactly the keys given"),
        Control(LateRunningAfterTerminal, "after its terminal event"),
        Control(BatchStopsAtKeyInFlight, "every accepted workload is queued, running or reported|every queued task "
                                         "gets a terminal event"),
        *((Control(ReReportsWorkloadWithNextTask, "second terminal event"),) if compat.has_other_workloads() else ())],
    "heartbeat.survives_transient_backend_error": [
        Control(BackendErrorEscapes, "raised OSError", backend=StateDirectoryOutage()),
        Control(GuessesVerdictInOutage, "tasks that succeeded were reported", backend=StateDirectoryOutage())],
    "e2e.dag_run_completes": [Control(ReportsSuccessWithoutRunning, ".")],
    "e2e.deadline_callback_runs": [Control(CallbacksDeclaredButDropped, ".")],
    "e2e.failed_task_retries_honoured": [Control(ForgetsRetries, ".")],
    "e2e.parallelism_respected": [Control(UntrackedRunning, ".")],
    "e2e.scheduler_crash_recovery": [Control(DeclinesAdoption, ".")],
    "e2e.stuck_in_queued_handled": [Control(StuckHandlingRaises, ".")],
}

#: Broken executors that only the state machine may catch: every contract check passes them.
STATEFUL_ONLY = (DropsEventWhenTwoRunTogether, ExceedsParallelismAfterRevoke, DuplicateEventAfterMultiDagFilter,
                 RebuildsKeyFromNames, LateRunningAfterTerminal, BatchStopsAtKeyInFlight,
                 # the state machine queues callbacks and connection tests only where Airflow has them
                 *((ReReportsWorkloadWithNextTask,) if compat.has_other_workloads() else ()))

#: The reference executors, for "a correct executor passes" tests.
REFERENCE = {"LocalExecutor": LocalExecutor, "SequentialExecutor": SequentialExecutor}


#: capabilities that need an executor method the installed Airflow's BaseExecutor may not have
_NEEDS_BASE_METHOD = {"revoke": "revoke_task", "cleanup_stuck": "cleanup_stuck_queued_tasks"}


def missing_on_this_airflow(check_id: str) -> str | None:
    """Why no executor can have a capability the check needs on the installed Airflow (revoke_task only
    exists since 2.10), or None. Such a check is rightly 'not supported' for every executor here."""
    from conformance import checks
    from conformance.harness import airflow_compat as compat

    base = compat.base_executor_class()
    for need in checks.get(check_id).needs:
        method = _NEEDS_BASE_METHOD.get(need)
        if method and not hasattr(base, method):
            return f"BaseExecutor.{method} does not exist on Airflow {compat.version_string()}"
    return None


def area_marks(check_id: str) -> list[Any]:
    """e2e checks start a real Airflow deployment (a minute or more): opt-in with ``-m e2e``."""
    import pytest

    return [pytest.mark.e2e, pytest.mark.slow] if check_id.startswith("e2e.") else []
