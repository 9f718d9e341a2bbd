"""Broken executors that the ``lifecycle`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

import threading
from typing import Any

from airflow.executors.base_executor import BaseExecutor

from conformance.harness import airflow_compat as compat
from reference_executors._base import ReferenceExecutorBase
from reference_executors._process import new_external_id
from reference_executors.local import LocalExecutor
from tests.controls._shared import Control
from tests.controls.heartbeat import ForgetsRunning
from tests.controls.preflight import RelaunchesEveryHeartbeat


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


class EndHangsWhenAdopting(LocalExecutor):
    """Adopts (so LIFE-1's waiting does not apply to it) and its end() waits for a backend acknowledgement
    that never comes: scheduler shutdown hangs."""

    def end(self) -> None:
        threading.Event().wait()


class EndWaitsForQueuedWork(LocalExecutor):
    """end() waits until nothing is queued or running -- but it no longer starts queued work, so with a task
    still waiting for a slot it never returns (scheduler shutdown hangs)."""

    def end(self) -> None:
        pause = threading.Event()
        while self.queued_tasks or self._procs or self._held:
            self.sync()
            pause.wait(0.05)
        self._pool.shutdown()


CONTROLS: dict[str, list[Control]] = {
    "lifecycle.end_returns_with_work_in_flight": [
        Control(EndHangsWhenAdopting, r"end\(\) did not return within"),
        Control(EndWaitsForQueuedWork, r"end\(\) did not return within")],
    "lifecycle.constructible_without_arguments": [Control(NeedsArguments, "missing 1 required positional argument",
                                                          kwargs={"endpoint": "http://x"})],
    "lifecycle.end_waits_and_flushes": [Control(EndDoesNotWait, r"end\(\) returned while|after end\(\) returned there "
                                                                "is no terminal event")],
    "lifecycle.terminate_stops_work": [Control(TerminateDoesNothing, r"after terminate\(\) these tasks still run")],
    "lifecycle.same_key_queued_twice_runs_once": [Control(RunsTwiceIfQueuedTwice, "queued twice, ran 2 times")],
    # a failure where the installed base holds the key back (2.x); advice on 3.3, whose base does not
    "lifecycle.requeued_while_running_never_overlaps": [Control(
        DispatchesRequeuedImmediately, "started again .* before its previous run's process was gone",
        advice=not compat.base_holds_back_requeued_keys())],
    "lifecycle.at_most_once_per_try": [
        Control(RunsEachTaskTwice, "launched the same try more than once"),
        Control(RelaunchesEveryHeartbeat, "launched the same try more than once.*tracked in running: 0")],
    "lifecycle.tracks_task_until_terminal": [Control(ForgetsRunning, "while the task runs: has_task=False")],
    "lifecycle.repeated_build_start_end": [Control(OneShotExecutor, "executor already started in this process")],
}
