"""Broken executors that the ``events`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from airflow.utils.state import TaskInstanceState

from reference_executors._pool import PooledTask
from reference_executors._process import FAILED, SUCCESS
from reference_executors.local import LocalExecutor
from tests.controls._shared import Control
from tests.controls.heartbeat import ChattySync


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


class DuplicateEventAfterMultiDagFilter(LocalExecutor):
    """``get_event_buffer`` with several dags copies the matching events instead of popping them."""

    def get_event_buffer(self, dag_ids: Any = None) -> dict[Any, Any]:
        if dag_ids is not None and len(dag_ids) > 1:
            return {k: v for k, v in self.event_buffer.items() if getattr(k, "dag_id", None) in dag_ids}
        return super().get_event_buffer(dag_ids)


CONTROLS: dict[str, list[Control]] = {
    "events.dead_worker_reported_failed_others_reported": [
        Control(WorkerDeathReportedSuccess, "whose worker was killed: reported success"),
        Control(StopsReportingAtUnreadableResult, "ended but were never reported")],
    "events.one_terminal_event_matching_journal": [Control(AlwaysSuccess, "reported success, expected one of")],
    "events.only_known_keys_and_states": [
        Control(StringStates, "is a str, not TaskInstanceState"),
        Control(ChattySync, "event for a key never queued"),
        Control(ReportsUpForRetry, "reported up_for_retry: an executor reports only")],
    "events.buffer_flush_and_dag_filter": [
        Control(FilterIgnored, r"get_event_buffer\(\['conformance_dag_a'\]\) returned"),
        # the scheduler never filters (backfill and tests do): a filtered read is this check's, not the state machine's
        Control(DuplicateEventAfterMultiDagFilter, r"returned events again|still in the buffer")],
    "events.intermediate_states_precede_terminal": [Control(RunningAfterTerminal, "running after the terminal event")],
    "events.tolerates_unknown_keys": [Control(StrictChangeState, "raised KeyError")],
}
