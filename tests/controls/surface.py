"""Broken executors that the ``surface`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from reference_executors.local import LocalExecutor
from tests.controls._shared import Control


class SlotsAvailableIsAMethod(LocalExecutor):
    """``slots_available`` written as a method, not a property: the scheduler compares the bound method with
    an int (TypeError) in the loop that queues work."""

    def slots_available(self) -> int:  # type: ignore[override]
        return self.parallelism - len(self.running) - len(self.queued_tasks)


CONTROLS: dict[str, list[Control]] = {
    "surface.scheduler_members_answer": [Control(SlotsAvailableIsAMethod, r"slots_available: is <bound method")],
}
