"""Processes of this session: found, described, ended -- so that nothing outlives a check or a run.

A process belongs to the session when it descends from the suite's own process (workers, supervisors,
``airflow tasks run`` children, multiprocessing's resource tracker) or carries the sandbox marker in its
environment (what escaped by double-forking). ``setproctitle`` can overwrite the environment that
/proc shows (Airflow 3's LocalExecutor workers do), which is why descent is the first sign.

Long-lived services the session owns on purpose (the e2e tier's Airflow deployment) register their
session ids in ``KEEP`` and are left to their owner.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from conformance.harness.timing import WaitTimedOut, wait_until

MARKER_ENV = "CONFORMANCE_SANDBOX"
#: Session ids (``setsid``) of services that stop themselves: never swept.
KEEP: set[int] = set()
#: Environment variables that mark processes of such a service (what escaped its session): never swept.
KEEP_MARKERS: set[str] = set()
#: The user's environment: processes that existed before the first executor was built (a conftest fixture's
#: worker pool, a backend driver's daemons) or were declared with ``declare_environment``. Never swept, nor
#: what they start: they belong to whoever started them.
ENVIRONMENT: set[int] = set()
#: multiprocessing's helpers are shared by every check of a process: swept only when the session ends.
_SHARED_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    command: str

    @property
    def shared_helper(self) -> bool:
        return any(h in self.command for h in _SHARED_HELPERS)

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command[:100]})"


def _stat(pid: int) -> tuple[str, int, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[3])  # state, ppid, session id


def command_of(pid: int) -> str:
    """The process's command line from /proc ("?" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def children_of(pid: int) -> list[Proc]:
    """Live (non-zombie) direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] != "Z" and stat[1] == pid:
                found.append(Proc(int(entry.name), pid, stat[2], command_of(int(entry.name))))
    return found


def session_processes(marker: str, root_pid: int | None = None) -> list[Proc]:
    """Live (non-zombie) processes that descend from ``root_pid`` (this process) or carry
    ``CONFORMANCE_SANDBOX=marker``; never this process itself, never a kept service's session."""
    me = root_pid if root_pid is not None else os.getpid()
    needle = f"{MARKER_ENV}={marker}".encode()
    table: dict[int, tuple[int, int]] = {}
    marked: set[int] = set()
    kept: set[int] = set()
    keep_prefixes = tuple(f"{name}=".encode() for name in KEEP_MARKERS)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[0] == "Z" or pid == me:
            continue
        table[pid] = (stat[1], stat[2])
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if needle in environ:
                marked.add(pid)
            if keep_prefixes and any(v.startswith(keep_prefixes) for v in environ):
                kept.add(pid)
    found = []
    for pid, (ppid, sid) in table.items():
        if sid in KEEP or pid in kept or _under_kept_service(pid, table) or _in_environment(pid, table):
            continue
        if pid in marked or _descends(pid, me, table):
            found.append(Proc(pid, ppid, sid, command_of(pid)))
    return found


def declare_environment(*pids: int) -> None:
    """Declare processes (and what they start) as the user's environment: the suite never ends them.
    Processes alive when the first executor is built are declared automatically."""
    ENVIRONMENT.update(pids)


def _in_environment(pid: int, table: dict[int, tuple[int, int]]) -> bool:
    seen = set()
    while pid in table and pid not in seen:
        if pid in ENVIRONMENT:
            return True
        seen.add(pid)
        pid = table[pid][0]
    return pid in ENVIRONMENT


def _under_kept_service(pid: int, table: dict[int, tuple[int, int]]) -> bool:
    """A process started (directly or not) by a kept service -- even one that left the service's
    session with setsid, as executors' task processes do -- belongs to that service's owner."""
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        pid, _ = table[pid]
        if pid in table and table[pid][1] in KEEP:
            return True
    return False


def _descends(pid: int, ancestor: int, table: dict[int, tuple[int, int]]) -> bool:
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        pid = table[pid][0]
        if pid == ancestor:
            return True
    return False


def end_processes(procs: list[Proc], grace: float) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace`` seconds; reap our own children."""
    if not procs:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)
        try:
            wait_until(lambda: not [p for p in procs if _alive(p.pid)], "leftover processes to exit",
                       grace, poll=0.02)
            return
        except WaitTimedOut:
            continue


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"
