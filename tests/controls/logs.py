"""Broken executors that the ``logs`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from reference_executors.local import LocalExecutor
from tests.controls._shared import Control


class RaisingTaskLog(LocalExecutor):
    def get_task_log(self, ti: Any, try_number: int) -> tuple[list[str], list[str]]:
        messages, logs = super().get_task_log(ti, try_number)
        if not logs:
            raise FileNotFoundError(f"no log for {ti.key}")
        return messages, logs


CONTROLS: dict[str, list[Control]] = {
    "logs.get_task_log_shape": [Control(RaisingTaskLog, "raised FileNotFoundError")],
}
