"""Broken executors that the ``stuck`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from reference_executors.local import LocalExecutor
from tests.controls._shared import Control


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


CONTROLS: dict[str, list[Control]] = {
    "stuck.revoked_queued_task_never_starts": [Control(RevokeNoop, "started after it was revoked")],
    "stuck.revoke_adds_no_event_and_never_raises": [
        Control(RevokeEmitsEvent, "revoke_task changed the event buffer"),
        Control(RevokeRaisesForUnknown, "raised KeyError")],
    "stuck.revoked_running_task_untracked": [Control(RevokeLeavesRunning, "after revoke: in running=True")],
    "stuck.requeued_after_revoke_runs": [Control(RemembersRevoked, "SUCCESS event for the re-queued try")],
    "stuck.cleanup_returns_consumable": [Control(CleanupReturnsNone, "returned None, which the scheduler cannot"),
                                         Control(CleanupLeavesQueued, "the cleaned-up task started afterwards")],
}
