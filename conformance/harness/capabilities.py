"""The capabilities a check can require: a declared, documented set (SQLAlchemy's requirements).

A check says what it needs (``needs=("adoption",)``) or what it must not meet (``"!adoption"``: it
applies only to executors *without* that capability), never which executor it is for. A need that is
not declared here is refused when the check registers -- a misspelt capability would otherwise make
the check "not supported" for every executor, silently.

Which capabilities an executor has is read from its class (``conformance.harness.profile``) and, where an
override can lie, confirmed by behaviour (``conformance.certification.confirm``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Capability:
    name: str
    has: str  # completes "executors that ..."
    lacks: str  # completes "executors that ..." for the negation


DECLARED: dict[str, Capability] = {c.name: c for c in (
    Capability("parallel", "run several tasks at once (not single-threaded, parallelism >= 2 or unlimited)",
               "run one task at a time"),
    Capability("single_threaded", "declare is_single_threaded (run one task at a time inside the heartbeat)",
               "are not single-threaded"),
    Capability("local", "declare is_local (run tasks on the scheduler's host)", "are not local"),
    Capability("adoption", "adopt running tasks of a dead scheduler (override try_adopt_task_instances and "
                           "really adopt tasks of their own kind)",
               "cannot adopt tasks of a dead scheduler (their tasks do not outlive the scheduler)"),
    Capability("revoke", "implement revoke_task (Airflow 2.10+ and 3.x stuck-in-queued handling)",
               "do not implement revoke_task"),
    Capability("cleanup_stuck", "implement cleanup_stuck_queued_tasks (Airflow 2.x stuck-in-queued handling)",
               "do not implement cleanup_stuck_queued_tasks"),
    Capability("stuck_handling", "implement revoke_task or cleanup_stuck_queued_tasks",
               "have no stuck-in-queued handling"),
    Capability("cli_commands", "vend CLI commands (override get_cli_commands)", "vend no CLI commands"),
    Capability("task_log", "serve task logs (override get_task_log)", "serve no task logs"),
    Capability("multi_team", "declare supports_multi_team (Airflow 3.3+)", "are not multi-team"),
    Capability("callbacks", "declare supports_callbacks (run deadline callbacks, Airflow 3.3+)",
               "do not run callbacks"),
    Capability("backend", "come with a backend driver that can inject a transient outage (--backend-driver)",
               "have no backend driver"),
)}


def validate_needs(check_id: str, needs: Iterable[str]) -> None:
    """Refuse a need that is not declared (at registration, so a typo fails at import)."""
    for need in needs:
        name = need.removeprefix("!")
        if name not in DECLARED:
            raise ValueError(f"check {check_id!r} needs {need!r}, which is not a declared capability; "
                             f"declared: {sorted(DECLARED)}")


def unmet(needs: Iterable[str], capabilities: dict[str, bool]) -> list[str]:
    """Needs that ``capabilities`` do not meet (``"!name"`` is met when the capability is absent)."""
    missing = []
    for need in needs:
        name, wanted = (need[1:], False) if need.startswith("!") else (need, True)
        if bool(capabilities.get(name, False)) is not wanted:
            missing.append(need)
    return missing


def explain_unmet(missing: Iterable[str]) -> str:
    """One sentence an author reads correctly: what kind of executor the check is for."""
    parts = []
    for need in missing:
        cap = DECLARED[need.removeprefix("!")]
        parts.append(f"applies only to executors that {cap.lacks if need.startswith('!') else cap.has}")
    return "; ".join(parts)
