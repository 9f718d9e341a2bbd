"""Broken executors that the ``heartbeat`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from airflow.utils.state import TaskInstanceState

from reference_executors import _bridge
from reference_executors._process import FAILED, new_external_id
from reference_executors.faults import StateDirectoryOutage
from reference_executors.local import LocalExecutor
from reference_executors.sequential import SequentialExecutor
from tests.controls._shared import Control, _FileVerdictLocal, _refuse_unserved
from tests.controls.preflight import NeverStarts


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


class ChattySync(LocalExecutor):
    """Emits a heartbeat 'event' for a key nobody queued."""

    def sync(self) -> None:
        super().sync()
        from airflow.models.taskinstancekey import TaskInstanceKey

        self.event_buffer[TaskInstanceKey("executor_internal", "heartbeat", "r", 1, -1)] = (
            TaskInstanceState.RUNNING, None)


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


class StartsOnlyWhenQueueOutnumbersRunning(LocalExecutor):
    """Starts queued work only while more tasks are queued than running: fine on an idle executor, but
    with tasks in flight the newly queued ones wait although slots are free."""

    def trigger_tasks(self, open_slots: int) -> None:
        if len(self.queued_tasks) <= len(self.running):
            return
        super().trigger_tasks(open_slots)


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


CONTROLS: dict[str, list[Control]] = {
    "heartbeat.starts_queued_work_while_busy": [Control(StartsOnlyWhenQueueOutnumbersRunning,
                                                        "newly queued tasks did not all start")],
    "heartbeat.parallelism_zero_unlimited_or_refused": [Control(ZeroParallelismRunsNothing,
                                                                "accepted the value but did not start")],
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
    "heartbeat.survives_transient_backend_error": [
        Control(BackendErrorEscapes, "raised OSError", backend=StateDirectoryOutage()),
        Control(GuessesVerdictInOutage, "tasks that succeeded were reported", backend=StateDirectoryOutage())],
}
