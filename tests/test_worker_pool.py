"""The reference LocalExecutor's worker pool on its own: hand-over, wake-ups, and a worker that dies
before its task reached it (the task runs once, elsewhere, and is not reported lost)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from reference_executors._pool import WorkerPool
from reference_executors._process import FAILED, SUCCESS


def _append_to(payload: Any) -> None:
    """The task: append a line to the file named by the payload (how often it ran is the file's length)."""
    path, text = payload
    with open(path, "a") as fh:
        fh.write(text + "\n")


class _Key:
    def __init__(self, task_id: str):
        self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index = "d", task_id, "r", 1, -1


@pytest.fixture
def pool(tmp_path: Path) -> Any:
    made = WorkerPool(_append_to, isolate=False)
    yield made
    made.shutdown()


def _runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_handed_over_tasks_run_once_and_report(pool: WorkerPool, tmp_path: Path) -> None:
    pool.grow(3)
    out = tmp_path / "ran.txt"
    handles = [pool.submit(tmp_path, f"t{i}", _Key(f"t{i}"), (str(out), f"t{i}")) for i in range(3)]
    assert [h.wait() for h in handles] == [(SUCCESS, "ok")] * 3
    assert sorted(out.read_text().split()) == ["t0", "t1", "t2"]
    pids = [w.pid for w in pool.workers]
    pool.shutdown()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped by shutdown: nothing left behind


def test_the_first_worker_is_asked_to_wake_the_others(pool: WorkerPool, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """One wake-up from the executor per flush: the first message names the other workers' bells."""
    pool.grow(3)
    sent: list[tuple[int, Any]] = []

    def recording(worker: Any) -> Any:
        original = worker.conn.send

        def send(message: Any) -> None:
            sent.append((worker.pid, message))
            original(message)
        return send

    for worker in pool.workers:
        monkeypatch.setattr(worker.conn, "send", recording(worker))
    out = tmp_path / "ran.txt"
    with pool.batch():
        handles = [pool.submit(tmp_path, f"t{i}", _Key(f"t{i}"), (str(out), f"t{i}")) for i in range(3)]
        assert sent == []  # nothing is written before the batch ends
    relays = {pid: message[-1] for pid, message in sent}
    first = pool._ran_by["t0"]
    others = [pool._ran_by[f"t{i}"] for i in (1, 2)]
    assert sorted(relays[first.pid]) == sorted(w.bell.write_fd for w in others)
    assert all(relays[w.pid] == [] for w in others)
    assert [h.wait()[0] for h in handles] == [SUCCESS] * 3


def test_a_task_whose_worker_died_before_the_handover_runs_on_another(pool: WorkerPool, tmp_path: Path) -> None:
    pool.grow(2)
    out = tmp_path / "ran.txt"
    with pool.batch():  # the worker dies between the dispatch and the hand-over at the batch's end
        handle = pool.submit(tmp_path, "t0", _Key("t0"), (str(out), "t0"))
        doomed = pool._ran_by["t0"]
        os.kill(doomed.pid, signal.SIGKILL)
        os.waitpid(doomed.pid, 0)
    # the write failed: the task went to the other worker at once, and is not reported lost
    assert handle.wait() == (SUCCESS, "ok")
    assert handle.pid != doomed.pid
    assert _runs(out) == 1


def test_a_task_stopped_before_the_handover_never_starts(pool: WorkerPool, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its worker died and no other can be forked now (EAGAIN): the task waits; stopped, it never runs."""
    pool.grow(1)
    out = tmp_path / "ran.txt"

    def cannot_fork() -> Any:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    with pool.batch():
        handle = pool.submit(tmp_path, "t0", _Key("t0"), (str(out), "t0"))
        doomed = pool._ran_by["t0"]
        os.kill(doomed.pid, signal.SIGKILL)
        os.waitpid(doomed.pid, 0)
        monkeypatch.setattr(pool, "_fork_worker", cannot_fork)
    assert pool.runs("t0") and "t0" not in pool.news()  # waiting, not lost
    handle.stop()
    assert handle.poll() == (FAILED, "stopped before it was handed to a worker")
    monkeypatch.undo()
    pool.flush()
    assert pool.workers == [] and _runs(out) == 0


def test_after_shutdown_no_task_counts_as_running(pool: WorkerPool, tmp_path: Path) -> None:
    """terminate() kills a worker, then shuts the pool down; end() then waits for that task's verdict,
    which must come from its record and exit status -- not wait for a worker that is gone."""
    pool.grow(1)
    handle = pool.submit(tmp_path, "t0", _Key("t0"), (str(tmp_path / "ran.txt"), "t0"))
    os.kill(handle.pid, signal.SIGKILL)
    pool.shutdown()
    assert not pool.runs("t0")
    assert handle.poll() is not None
