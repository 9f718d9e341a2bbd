"""Broken executors that the ``e2e`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from reference_executors.local import LocalExecutor
from tests.controls._shared import Control
from tests.controls.attributes import CallbacksDeclaredButDropped
from tests.controls.preflight import ReportsSuccessWithoutRunning


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


class StuckHandlingRaises(LocalExecutor):
    """A backend error escapes from revoke/cleanup: the scheduler catches only NotImplementedError."""

    def revoke_task(self, *, ti: Any) -> None:
        raise RuntimeError("backend unavailable while revoking")

    def cleanup_stuck_queued_tasks(self, tis: list[Any]) -> list[str]:
        raise RuntimeError("backend unavailable while cleaning up")


CONTROLS: dict[str, list[Control]] = {
    "e2e.dag_run_completes": [Control(ReportsSuccessWithoutRunning, ".")],
    "e2e.deadline_callback_runs": [Control(CallbacksDeclaredButDropped, ".")],
    "e2e.failed_task_retries_honoured": [Control(ForgetsRetries, ".")],
    "e2e.parallelism_respected": [Control(UntrackedRunning, ".")],
    "e2e.scheduler_crash_recovery": [Control(DeclinesAdoption, ".")],
    "e2e.stuck_in_queued_handled": [Control(StuckHandlingRaises, ".")],
}
