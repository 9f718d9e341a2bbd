"""The journal: ground truth of what probe work really ran, where, when and how often.

Probe runs append JSON lines to ``<journal_dir>/journal.jsonl``. Each entry is written with a single
``write(2)`` on a descriptor opened with ``O_APPEND``, which the kernel applies atomically to the end
of a local file, so any number of processes (forked, spawned, subprocesses, several executors) can
write concurrently without locks. Each xdist worker has its own sandbox and therefore its own journal.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide on Linux, so entries from different
processes on this host are comparable with each other and with the harness's transcript).

Reading never modifies the file: checks take a ``Journal`` snapshot whenever they need one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "CONFORMANCE_JOURNAL_DIR"
FILENAME = "journal.jsonl"


def current_dir() -> Path:
    """The journal directory of this process's sandbox (inherited through the environment)."""
    value = os.environ.get(ENV_VAR)
    if not value:
        raise RuntimeError(f"{ENV_VAR} is not set: a probe ran outside a conformance sandbox")
    return Path(value)


def append(journal_dir: Path, entry: dict[str, Any]) -> None:
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(journal_dir / FILENAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie's work is over)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class ProbeRun:
    """One execution of a probe: its start entry and, once it finished, its end entry."""

    start: dict[str, Any]
    end: dict[str, Any] | None

    @property
    def task_id(self) -> str:
        return str(self.start["task_id"])

    @property
    def nonce(self) -> str:
        return str(self.start["nonce"])

    @property
    def try_number(self) -> int | None:
        value = self.start.get("try_number")
        return None if value is None else int(value)

    @property
    def pid(self) -> int:
        return int(self.start["pid"])

    @property
    def started(self) -> float:
        return float(self.start["t"])

    @property
    def host(self) -> str | None:
        value = self.start.get("host")
        return None if value is None else str(value)

    @property
    def ancestry(self) -> list[int]:
        """The task process's ancestors, parent first (empty where /proc was not readable)."""
        return [int(p) for p in self.start.get("ancestry") or []]

    @property
    def finished(self) -> float | None:
        return None if self.end is None else float(self.end["t"])

    @property
    def outcome(self) -> str | None:
        return None if self.end is None else str(self.end["outcome"])

    @property
    def exits(self) -> float | None:
        """When the run's process is gone at the latest: its work's end plus the teardown it was told to
        linger for (a deferred task's process exits after its work)."""
        return None if self.end is None else float(self.end["t"]) + float(self.end.get("linger", 0.0))

    @property
    def worker_killed(self) -> bool | None:
        """For a ``killworker`` probe: whether it killed a process proven to be the executor's worker
        (None for other probes, or before it ended)."""
        if self.end is None or "worker" not in self.end:
            return None
        return self.end["worker"] is not None

    def overlaps(self, other: ProbeRun, now: float) -> bool:
        a_end = self.finished if self.finished is not None else now
        b_end = other.finished if other.finished is not None else now
        return self.started < b_end and other.started < a_end

    def describe(self) -> str:
        ended = f"ended {self.outcome} at {self.finished:.3f}" if self.end else "no end entry"
        return (f"{self.task_id} try={self.try_number} pid={self.pid} via={self.start.get('via')} "
                f"started {self.started:.3f}, {ended}")


class Journal:
    """A snapshot of the journal with the queries the checks need."""

    def __init__(self, journal_dir: Path, runs: list[ProbeRun] | None = None,
                 entries: list[dict[str, Any]] | None = None):
        self.dir = journal_dir
        if runs is None or entries is None:
            runs, entries = _read(journal_dir / FILENAME)
        self.runs: list[ProbeRun] = runs
        self._entries = entries

    def of_dag_run(self, dag_id: str, run_id: str) -> Journal:
        """Only what tasks of one DAG run wrote (the e2e tier shares one journal across its runs)."""
        def mine(entry: dict[str, Any]) -> bool:
            return entry.get("dag_id") == dag_id and entry.get("run_id") == run_id

        return Journal(self.dir, [r for r in self.runs if mine(r.start)], [e for e in self._entries if mine(e)])

    def entries(self, event: str) -> list[dict[str, Any]]:
        """Entries other than a run's start and end (e.g. an e2e sensor's ``poke``)."""
        return [e for e in self._entries if e.get("event") == event]

    def runs_by_task(self) -> dict[str, list[ProbeRun]]:
        grouped: dict[str, list[ProbeRun]] = {}
        for run in self.runs:
            grouped.setdefault(run.task_id, []).append(run)
        return grouped

    def refresh(self) -> Journal:
        return Journal(self.dir)

    def runs_of(self, task_id: str, try_number: int | None = None) -> list[ProbeRun]:
        return [r for r in self.runs
                if r.task_id == task_id and (try_number is None or r.try_number == try_number)]

    def started(self, task_id: str) -> bool:
        return bool(self.runs_of(task_id))

    def finished(self, task_id: str) -> bool:
        return any(r.end is not None for r in self.runs_of(task_id))

    def finished_all(self, task_ids: Iterable[str]) -> bool:
        """Every run of these tasks has ended in this snapshot (their work is over)."""
        return all(r.end is not None for t in task_ids for r in self.runs_of(t))

    def runs_after(self, moment: float) -> list[ProbeRun]:
        return [r for r in self.runs if r.started >= moment]

    def still_running(self) -> list[ProbeRun]:
        """Runs with no end entry whose process is still alive (a hang, or a leak)."""
        return [r for r in self.runs if r.end is None and pid_alive(r.pid)]

    def max_concurrency(self, task_ids: Iterable[str] | None = None, now: float | None = None,
                        ended_by: dict[str, float] | None = None) -> int:
        """Largest number of runs in progress at the same moment (sweep over start/end times).

        ``ended_by`` caps runs of some tasks at a moment (e.g. when they were revoked: from then on
        the executor no longer counts them, whether it killed them or let them finish)."""
        wanted = None if task_ids is None else set(task_ids)
        horizon = now if now is not None else float("inf")
        caps = ended_by or {}
        points: list[tuple[float, int]] = []
        for run in self.runs:
            if wanted is not None and run.task_id not in wanted:
                continue
            end = run.finished if run.finished is not None else horizon
            end = min(end, caps.get(run.task_id, end))
            if end <= run.started:
                continue
            points.append((run.started, 1))
            points.append((end, -1))
        points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant
        current = best = 0
        for _, delta in points:
            current += delta
            best = max(best, current)
        return best

    def overlapping_pairs(self, now: float) -> list[tuple[ProbeRun, ProbeRun]]:
        pairs = []
        for i, a in enumerate(self.runs):
            for b in self.runs[i + 1:]:
                if a.overlaps(b, now):
                    pairs.append((a, b))
        return pairs


@dataclass
class _Parsed:
    """What has been read of one journal file so far: reading resumes at ``offset``, so each snapshot
    costs only the lines appended since the last one (a session's journal grows to thousands of runs,
    and checks poll it every few milliseconds)."""

    inode: int
    offset: int = 0
    runs: list[ProbeRun] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    early_ends: dict[str, dict[str, Any]] = field(default_factory=dict)
    others: list[dict[str, Any]] = field(default_factory=list)


_PARSED: dict[Path, _Parsed] = {}


def _read(path: Path) -> tuple[list[ProbeRun], list[dict[str, Any]]]:
    """Runs (a start entry and its end entry, matched by ``run``) and every other entry."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        _PARSED.pop(path, None)
        return [], []
    parsed = _PARSED.get(path)
    inode = stat.st_ino
    if parsed is None or parsed.inode != inode or stat.st_size < parsed.offset:
        parsed = _PARSED[path] = _Parsed(inode)
    with open(path, "rb") as fh:
        fh.seek(parsed.offset)
        data = fh.read()
    complete = data[: data.rfind(b"\n") + 1]  # a writer may be mid-line; the next snapshot will see it
    parsed.offset += len(complete)
    for line in complete.splitlines():
        entry = json.loads(line)
        uid = entry.get("run")
        if entry["event"] == "start":
            parsed.index[uid] = len(parsed.runs)
            parsed.runs.append(ProbeRun(entry, parsed.early_ends.pop(uid, None)))
        elif entry["event"] == "end":
            if uid in parsed.index:
                i = parsed.index[uid]
                parsed.runs[i] = ProbeRun(parsed.runs[i].start, entry)
            else:
                parsed.early_ends[uid] = entry
        else:
            parsed.others.append(entry)
    return list(parsed.runs), list(parsed.others)
