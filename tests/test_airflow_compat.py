"""The compatibility layer on the installed Airflow major."""

from __future__ import annotations

import airflow
import pytest
from airflow.executors.base_executor import BaseExecutor

from conformance.harness import airflow_compat as compat


class _Recorder(BaseExecutor):
    def end(self) -> None:
        pass

    if compat.is_airflow3() and not hasattr(BaseExecutor, "_get_workloads_to_schedule"):

        def queue_workload(self, workload: object, session: object = None) -> None:
            """3.0-3.2's base refuses every workload: executors store task workloads themselves."""
            self.queued_tasks[workload.ti.key] = workload  # type: ignore[attr-defined]


def test_version_matches_import() -> None:
    assert compat.version_string() == airflow.__version__
    assert compat.major() == int(airflow.__version__.split(".")[0])


def test_make_key_fields() -> None:
    key = compat.make_key("d", "t", "r", 3, 2)
    assert (key.dag_id, key.task_id, key.run_id, key.try_number, key.map_index) == ("d", "t", "r", 3, 2)


def test_make_task_builds_a_real_task_instance_without_a_database() -> None:
    from airflow.models.taskinstance import TaskInstance

    handle = compat.make_task("compat_dag", "compat_task", try_number=2, priority=7)
    assert isinstance(handle.ti, TaskInstance)
    assert handle.ti.key == handle.key == compat.make_key("compat_dag", "compat_task", "conformance_run", 2)
    assert handle.ti.priority_weight == 7
    if compat.is_airflow3():
        assert handle.workload.ti.key == handle.key and not handle.command
    else:
        assert handle.command[:3] == ["airflow", "tasks", "run"]
        assert BaseExecutor.validate_airflow_tasks_run_command(handle.command) == ("compat_dag", "compat_task")


def test_queue_task_goes_where_the_scheduler_puts_it() -> None:
    executor = _Recorder(parallelism=3)
    handle = compat.make_task("compat_dag", "queued_task", priority=4)
    compat.queue_task(executor, handle)
    assert handle.key in executor.queued_tasks
    assert executor.has_task(handle.ti)
    assert executor.slots_available == 2


def test_compat_attributes_follow_the_installed_base_class() -> None:
    attrs = compat.compat_attributes()
    assert {"is_local", "is_production", "serve_logs", "supports_ad_hoc_ti_run"} <= set(attrs)
    if compat.is_airflow3():
        assert "supports_pickling" not in attrs
        if hasattr(BaseExecutor, "sentry_integration"):  # 3.1+
            assert attrs.get("sentry_integration") is str
    else:
        assert {"supports_pickling", "is_single_threaded"} <= set(attrs)


def test_handle_stuck_reports_unsupported_for_the_base_class() -> None:
    executor = _Recorder()
    handle = compat.make_task("compat_dag", "stuck_task")
    with pytest.raises(compat.StuckHandlingUnsupported):
        compat.handle_stuck(executor, [handle.ti])


def test_terminal_states_are_task_instance_states() -> None:
    s = compat.state_enum()
    assert compat.terminal_states() == {s.SUCCESS, s.FAILED}


@pytest.mark.parametrize("try_number", [1, 2, 3])
def test_a_tasks_key_keeps_its_try_number_when_it_starts_running(try_number: int) -> None:
    """Before 2.10 ``try_number`` reads ``_try_number + 1`` unless the TI is RUNNING: the key of a queued
    task and of the same task running (as adoption sees it) must still be one key."""
    handle = compat.make_task("conformance_dag", "try_keys", try_number=try_number)
    assert handle.key.try_number == try_number and handle.ti.key == handle.key
    ti = compat.adoption_ready(handle, job_id=1, external_executor_id="x", running=True)
    assert ti.key == handle.key
    ti = compat.adoption_ready(handle, job_id=1, external_executor_id="x", running=False)
    assert ti.key == handle.key


def test_reference_executors_start_the_highest_priority_first() -> None:
    """Whatever the installed base class does (3.2 orders lowest first), the reference orders itself."""
    from reference_executors import LocalExecutor

    executor = LocalExecutor(parallelism=2)
    handles = [compat.make_task("conformance_dag", f"prio_{p}", priority=p) for p in (1, 9, 5)]
    for handle in handles:
        compat.queue_task(executor, handle)
    ordered = [key.task_id for key, _ in executor.order_queued_tasks_by_priority()]
    assert ordered == ["prio_9", "prio_5", "prio_1"]
