"""The catalogue: every check's stable id, its SPEC clause, what it demands, and what it needs.

Like SQLAlchemy's requirements and scikit-learn's check names: ids are stable (``area.behaviour``)
so that expected failures, ``-k`` selection and reports can refer to them across releases. Checks
declare the *capabilities* they need (``needs``, from the declared set in ``conformance.harness.capabilities``);
a check whose capability is absent is reported "not supported" rather than passed.

This module is only the registry: it imports no check. ``conformance.checks.catalogue()`` imports the
check modules (which register here) and returns the full catalogue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.harness.capabilities import validate_needs

if TYPE_CHECKING:
    from conformance.harness.context import CheckContext

    CheckFunc = Callable[[CheckContext], None]

#: The contract areas, declared once: marker name -> what it covers (SPEC section).
AREAS: dict[str, str] = {
    "preflight": "one no-op and one failing task end to end, run first (SPEC PRE)",
    "attributes": "compatibility attributes (SPEC ATTR)",
    "surface": "the members the installed scheduler calls (SPEC SURF)",
    "heartbeat": "heartbeat semantics (SPEC HB)",
    "lifecycle": "start/end/terminate and task tracking (SPEC LIFE)",
    "events": "event buffer (SPEC EVT)",
    "adoption": "adopting tasks of a dead scheduler (SPEC ADOPT)",
    "stuck": "tasks stuck in queued (SPEC STUCK)",
    "stateful": "hypothesis state machine over scheduler actions (SPEC PROP)",
    "cli": "CLI commands vended by the executor (SPEC CLI)",
    "logs": "task logs (SPEC LOG)",
    "e2e": "end-to-end under a real scheduler (opt-in)",
}


@dataclass(frozen=True)
class CheckSpec:
    id: str
    clause: str
    title: str
    needs: tuple[str, ...]
    func: CheckFunc
    expects: str  # what Airflow's scheduler expects, in one or two sentences
    fix: str  # a hint for the executor author
    applies: Callable[[], bool]  # e.g. only on Airflow 3.3+
    applies_text: str
    advice: bool = False  # ATTR-2a conventions: reported, never failed

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def doc(self) -> str:
        return (self.func.__doc__ or "").strip()


CATALOG: dict[str, CheckSpec] = {}


def check(check_id: str, *, clause: str, title: str, expects: str, fix: str, needs: tuple[str, ...] = (),
          applies: Callable[[], bool] = lambda: True, applies_text: str = "all",
          advice: bool = False) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check function ``func(ctx)`` under a stable id; unknown areas and needs are refused."""
    area = check_id.split(".", 1)[0]
    if area not in AREAS:
        raise ValueError(f"check id {check_id!r} is not in a known area {sorted(AREAS)}")
    validate_needs(check_id, needs)

    def register(func: CheckFunc) -> CheckFunc:
        if check_id in CATALOG:
            raise ValueError(f"duplicate check id {check_id}")
        CATALOG[check_id] = CheckSpec(check_id, clause, title, needs, func, expects, fix, applies,
                                      applies_text, advice)
        return func

    return register
