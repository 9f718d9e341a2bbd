"""Broken executors that the ``adoption`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

import copy
from typing import Any

from reference_executors.local import LocalExecutor
from tests.controls._shared import Control, _requeue_payload


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


CONTROLS: dict[str, list[Control]] = {
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
}
