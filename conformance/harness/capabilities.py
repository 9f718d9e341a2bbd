"""The capabilities a check can require: a declared, documented set (SQLAlchemy's requirements).

A check says what it needs (``needs=("adoption",)``) or what it must not meet (``"!adoption"``: it
applies only to executors *without* that capability), never which executor it is for. A need that is
not declared here is refused when the check registers -- a misspelt capability would otherwise make
the check "not supported" for every executor, silently.

Which capabilities an executor has is one ``Capabilities`` object: per capability, what its class says
(*detected*, ``conformance.harness.profile``), what its author declared (``ExecutorProfile(capabilities=
...)``), what behaviour *confirmed* where an override can lie (``conformance.certification.confirm``), and
whether the installed Airflow has the capability at all (*exists*). Checks read it through
``ctx.can(name)``, which -- like the mapping itself -- refuses a name that is not declared here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any


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


@dataclass(frozen=True)
class CapabilityState:
    """Where one executor's answer for one capability comes from."""

    name: str
    detected: bool  # read from the class: attributes, overridden methods
    declared: bool | None = None  # the author's word (profile.capabilities), which wins over the rest
    confirmed: bool | None = None  # a short scenario's answer, where the class alone can lie
    exists: bool = True  # the installed Airflow has the capability (revoke_task: 2.10+; callbacks: 3.3+)

    @property
    def value(self) -> bool:
        if not self.exists:
            return False
        if self.declared is not None:
            return self.declared
        return self.confirmed if self.confirmed is not None else self.detected

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "detected": self.detected, "declared": self.declared,
                "confirmed": self.confirmed, "exists": self.exists}


class Capabilities(dict[str, bool]):
    """An executor's capabilities on this Airflow: name -> has it, with each answer's ``state``.

    A plain mapping to read (and to record in a certificate), but a name that is not a declared capability
    is an error -- ``caps["adoptoin"]`` raises instead of reading False -- and so is a missing one."""

    def __init__(self, states: Mapping[str, CapabilityState]):
        unknown = sorted(set(states) - set(DECLARED))
        if unknown:
            raise KeyError(f"capabilities {unknown} are not declared; known: {sorted(DECLARED)}")
        missing = sorted(set(DECLARED) - set(states))
        if missing:
            raise KeyError(f"capabilities {missing} were never computed: every declared capability needs an answer")
        super().__init__({name: state.value for name, state in states.items()})
        self.states: dict[str, CapabilityState] = dict(states)

    @classmethod
    def of(cls, values: Mapping[str, bool]) -> Capabilities:
        """From plain answers (a worker process receiving the parent's): detected as given. Every declared
        capability needs an answer here too -- one left out would otherwise read as "no"."""
        if isinstance(values, Capabilities):
            return values
        return cls({name: CapabilityState(name, bool(value)) for name, value in values.items()})

    def __getitem__(self, name: str) -> bool:
        _require_declared(name)
        return bool(super().__getitem__(name))

    def get(self, name: str, default: Any = None) -> Any:
        _require_declared(name)
        return super().get(name, default)

    def has(self, name: str) -> bool:
        return self[name]

    def confirm(self, name: str, value: bool) -> Capabilities:
        """A copy in which behaviour answered for ``name``."""
        states = dict(self.states)
        states[name] = replace(states[name], confirmed=value)
        return Capabilities(states)

    def provenance(self) -> dict[str, dict[str, Any]]:
        return {name: state.as_dict() for name, state in sorted(self.states.items())}


def _require_declared(name: str) -> None:
    if name not in DECLARED:
        import difflib

        near = difflib.get_close_matches(name, list(DECLARED), n=1)
        raise KeyError(f"{name!r} is not a declared capability{f' (did you mean {near[0]!r}?)' if near else ''}; "
                       f"declared: {sorted(DECLARED)}")


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
