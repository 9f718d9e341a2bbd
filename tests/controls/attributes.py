"""Broken executors that the ``attributes`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from airflow.utils.state import TaskInstanceState

from reference_executors._process import SUCCESS
from reference_executors.local import LocalExecutor
from tests.controls._shared import Control


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


class LocalButSaysRemote(LocalExecutor):
    """Forks every task on the scheduler's host but declares itself remote."""

    is_local = False
    serve_logs = False


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


CONTROLS: dict[str, list[Control]] = {
    "attributes.declared_with_types": [Control(WronglyTypedAttributes, r"is_local='yes' \(needs bool\)")],
    "attributes.single_threaded_never_overlaps": [Control(ClaimsSingleThreaded, "ran at the same time")],
    "attributes.parallel_executor_overlaps": [Control(SerialButClaimsParallel, "never in flight together")],
    "attributes.sentry_integration_importable": [Control(BadSentryIntegration, "does not import")],
    "attributes.multi_team_accepts_team_name": [Control(ClaimsMultiTeam, "unexpected keyword argument 'team_name'")],
    "attributes.serve_logs_goes_with_is_local": [Control(LocalWithoutServeLogs, "serve_logs is False",
                                                         advice=True)],
    "attributes.is_local_matches_where_tasks_run": [Control(LocalButSaysRemote, "descends from the scheduler",
                                                            advice=True)],
    "attributes.callbacks_declared_truthfully": [
        Control(CallbacksDeclaredButDropped, "the callback never ran"),
        Control(CallbackReportedAsTaskState, "is a TaskInstanceState, not a CallbackState")],
    "attributes.connection_tests_declared_truthfully": [Control(AcceptsUndeclaredConnectionTests,
                                                                "accepted the connection test instead of raising")],
}
