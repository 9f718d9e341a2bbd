"""The probe seam intercepts tasks in-process, in forked and spawned children and in subprocesses,
and the journal records what really ran. Driven through Airflow's *own* executors."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from conformance.groundtruth import seam
from conformance.groundtruth.journal import Journal
from conformance.groundtruth.probes import Probe, ProbeKind, decode
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness import airflow_compat as compat
from conformance.harness.scheduler import SchedulerHarness

AF3 = compat.is_airflow3()
#: where the seam intercepts a 3.x task: ``supervise_task`` (3.3) or ``supervise`` (3.0-3.2)
SUPERVISORS = ("supervise_task", "supervise")


def test_probe_identity_round_trips() -> None:
    probe = Probe.new(ProbeKind.FAIL, delay=0.25)
    assert decode(probe.task_id) == probe
    assert decode("extract_orders") is None
    assert decode("cfp-bogus-0-abc") is None


def test_non_probe_task_passes_through_untouched() -> None:
    calls = []

    def original(*args: Any, **kwargs: Any) -> int:
        calls.append(kwargs)
        return 7

    wrapped = seam._wrap_supervisor(original, via="test")
    real_ti = SimpleNamespace(task_id="extract_orders", dag_id="d", run_id="r", try_number=1, map_index=-1)
    assert wrapped(ti=real_ti, token="t") == 7
    assert calls == [{"ti": real_ti, "token": "t"}]


def test_journal_counts_concurrency(sandbox: Sandbox) -> None:
    from conformance.groundtruth import journal

    jdir = sandbox.root / "journal_unit"
    jdir.mkdir()
    for run, start, end in (("a", 1.0, 3.0), ("b", 2.0, 4.0), ("c", 5.0, 6.0)):
        journal.append(jdir, {"run": run, "event": "start", "t": start, "pid": 1, "task_id": run, "nonce": run})
        journal.append(jdir, {"run": run, "event": "end", "t": end, "outcome": "ok"})
    j = Journal(jdir)
    assert j.max_concurrency() == 2
    assert [r.task_id for r in j.runs_after(2.5)] == ["c"]
    assert len(j.overlapping_pairs(now=10.0)) == 1


@pytest.fixture
def airflow_local() -> Iterator[Any]:
    from airflow.executors.local_executor import LocalExecutor

    yield LocalExecutor


def _drive(sandbox: Sandbox, executor: Any, kinds: list[ProbeKind]) -> tuple[SchedulerHarness, list[Any]]:
    h = SchedulerHarness(executor, sandbox).start()
    tasks = [h.queue(Probe.new(k)) for k in kinds]
    hangs = [t for t in tasks if t.probe.kind is ProbeKind.HANG]
    if hangs:
        h.drain(lambda: all(h.journal().started(t.task_id) for t in hangs), "hang probes to start")
        for t in hangs:
            h.release(t)
    h.drain_terminal(tasks)
    h.end()
    return h, tasks


def _assert_journal_matches(h: SchedulerHarness, tasks: list[Any], via: tuple[str, ...]) -> None:
    for task in tasks:
        runs = h.runs(task)
        assert len(runs) == 1, runs
        run = runs[0]
        assert run.start["via"] in via
        assert run.pid != os.getpid(), "the task ran in the test process, not in a child"
        expected = "released" if task.probe.kind is ProbeKind.HANG else task.probe.kind.value
        assert run.outcome == expected


def test_airflow_local_executor_forked_children(sandbox: Sandbox, airflow_local: Any) -> None:
    kinds = [ProbeKind.OK, ProbeKind.FAIL, ProbeKind.RAISE, ProbeKind.HANG]
    if not AF3:
        kinds.append(ProbeKind.CRASH)  # 2.x forks per task; 3.x would lose its worker process
    h, tasks = _drive(sandbox, airflow_local(parallelism=2), kinds)
    _assert_journal_matches(h, tasks, via=SUPERVISORS if AF3 else ("task_run",))
    s = compat.state_enum()
    assert h.terminal_events(tasks[0].key)[0].state == s.SUCCESS
    assert h.terminal_events(tasks[2].key)[0].state == s.FAILED


@pytest.mark.skipif(not AF3, reason="Airflow 2's LocalExecutor workers are not spawn-safe")
def test_airflow_local_executor_spawned_children(sandbox: Sandbox, airflow_local: Any) -> None:
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        executor = airflow_local(parallelism=2)
        if getattr(executor, "is_mp_using_fork", multiprocessing.get_start_method() == "fork"):
            pytest.skip(f"Airflow {compat.version_string()}'s LocalExecutor forks whatever the start method")
        h, tasks = _drive(sandbox, executor, [ProbeKind.OK, ProbeKind.RAISE])
    finally:
        multiprocessing.set_start_method(previous, force=True)
    _assert_journal_matches(h, tasks, via=SUPERVISORS)


def _spawned_task_run(task_id: str) -> None:
    from airflow.cli.commands import task_command

    args = SimpleNamespace(dag_id="d", task_id=task_id, execution_date_or_run_id="r", map_index=-1)
    task_command.task_run(args)


@pytest.mark.skipif(AF3, reason="the 2.x in-process path is task_command.task_run")
def test_task_run_seam_in_spawned_child(sandbox: Sandbox) -> None:
    probe = Probe.new(ProbeKind.OK)
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_spawned_task_run, args=(probe.task_id,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    runs = sandbox.journal().runs_of(probe.task_id)
    assert len(runs) == 1 and runs[0].start["via"] == "task_run" and runs[0].pid == proc.pid


@pytest.mark.skipif(AF3, reason="Airflow 2 only: `airflow tasks run` subprocesses")
def test_airflow_sequential_executor_subprocess(sandbox: Sandbox) -> None:
    from airflow.executors.sequential_executor import SequentialExecutor

    h, tasks = _drive(sandbox, SequentialExecutor(), [ProbeKind.OK, ProbeKind.FAIL, ProbeKind.CRASH])
    _assert_journal_matches(h, tasks, via="airflow-shim")
    s = compat.state_enum()
    assert [h.terminal_events(t.key)[0].state for t in tasks] == [s.SUCCESS, s.FAILED, s.FAILED]


@pytest.mark.skipif(AF3, reason="Airflow 2 only: EXECUTE_TASKS_NEW_PYTHON_INTERPRETER")
def test_airflow_local_executor_new_interpreter(sandbox: Sandbox, airflow_local: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow import settings

    monkeypatch.setattr(settings, "EXECUTE_TASKS_NEW_PYTHON_INTERPRETER", True)
    h, tasks = _drive(sandbox, airflow_local(parallelism=2), [ProbeKind.OK, ProbeKind.FAIL])
    _assert_journal_matches(h, tasks, via="airflow-shim")


@pytest.mark.skipif(not AF3, reason="Airflow 3 only: remote workers run execute_workload")
def test_execute_workload_subprocess(sandbox: Sandbox) -> None:
    probe = Probe.new(ProbeKind.OK)
    handle = compat.make_task("conformance_dag", probe.task_id)
    result = subprocess.run([sys.executable, "-m", "airflow.sdk.execution_time.execute_workload",
                             "--json-string", handle.workload.model_dump_json()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sandbox.journal().runs_of(probe.task_id)
    assert len(runs) == 1 and runs[0].start["via"] in SUPERVISORS and runs[0].outcome == "ok"


def test_shim_passes_real_commands_to_real_airflow(sandbox: Sandbox) -> None:
    result = subprocess.run(["airflow", "version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert compat.version_string() in result.stdout


@contextlib.contextmanager
def _parent_with_a_child() -> Iterator[tuple[int, int]]:
    """A process (a worker, or a backend's daemon) with one child (a task): their pids, both killed after."""
    import signal

    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, "
                               "'-c', 'import time; time.sleep(60)']); print(p.pid, flush=True); p.wait()"],
                              stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        yield parent.pid, child
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_killworker_targets_the_executors_child_never_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``killworker`` probe kills the ancestor that is the scheduler's child (the executor's worker),
    nothing above it; a task that is itself the scheduler's child has no separate worker."""
    from conformance.groundtruth import probes

    monkeypatch.setenv(probes.SCHEDULER_PID_ENV, str(os.getpid()))
    with _parent_with_a_child() as (worker, task):
        assert probes.executor_worker(task) == worker
        assert probes.executor_worker(worker) is None  # the task process is the worker itself
        assert os.getpid() not in {probes.executor_worker(task), probes.executor_worker(worker)}
        assert worker in probes.ancestry(task) and os.getpid() in probes.ancestry(task)


def test_killworker_never_kills_a_process_it_cannot_prove_is_the_executors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task under someone else's process tree (a batch scheduler's step daemon, a task queue's worker): its
    parent is the backend's daemon, not the executor's worker -- nothing may be killed but the task."""
    from conformance.groundtruth import probes

    with _parent_with_a_child() as (daemon, task):
        monkeypatch.setenv(probes.SCHEDULER_PID_ENV, str(daemon + 10_000_000))  # a scheduler elsewhere
        assert probes.executor_worker(task) is None
        monkeypatch.delenv(probes.SCHEDULER_PID_ENV)
        assert probes.executor_worker(task) is None
