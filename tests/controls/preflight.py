"""Broken executors that the ``preflight`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from reference_executors import _bridge
from reference_executors.local import LocalExecutor
from tests.controls._shared import Control


class NeverReportsResults(LocalExecutor):
    """Runs every task but never turns a finished one into an event (success()/fail() never called)."""

    def _report(self, key: Any, state: str, info: str) -> None:
        pass


class HeartbeatRaises(LocalExecutor):
    """Its backend is down: every heartbeat raises (and would end the scheduler)."""

    def heartbeat(self) -> None:
        raise ConnectionRefusedError(111, "Connection refused (the executor's backend)")


class NeverStarts(LocalExecutor):
    def _dispatch(self, key: Any, payload: Any) -> None:
        pass  # accepted, tracked, never started


class ReportsSuccessWithoutRunning(LocalExecutor):
    """Fire and forget: the submission's success is reported as the task's, and nothing runs."""

    def _dispatch(self, key: Any, payload: Any) -> None:
        self.success(key, "submitted")


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


CONTROLS: dict[str, list[Control]] = {
    "preflight.task_runs_end_to_end": [
        Control(NeverReportsResults, "tasks ran and ended, but no terminal event came back"),
        Control(HeartbeatRaises, r"heartbeat\(\): raised ConnectionRefusedError"),
        Control(NeverStarts, "no task ever started"),
        Control(RelaunchesEveryHeartbeat, "launched more than once"),
        Control(ReportsSuccessWithoutRunning, "reported .* for tasks that never ran")],
}
