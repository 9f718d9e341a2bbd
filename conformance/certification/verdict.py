"""What a run's results add up to: the one verdict a certificate states.

A certificate must mean what it says. ``CERTIFIED`` is reserved for a run in which every applicable
check of the catalogue for this Airflow (of the tiers that ran) ran and passed; a run that selected a
subset says ``PARTIAL`` however green it was; waived failures (expected failures) say ``CERTIFIED WITH
EXCEPTIONS`` and are listed; ``--strict`` accepts neither waivers nor advice. Pure functions over
result dictionaries, so that the session, ``diff`` and the tests share one definition.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: statuses that are evidence against the executor, or say that the evidence is missing
BLOCKING = ("failed", "inconclusive", "not run")
#: statuses that do not block a certificate but are turned into failures by ``--strict``
EXCEPTIONS = ("expected failure", "advice")


class VerdictKind(enum.Enum):
    CERTIFIED = "CERTIFIED"
    CERTIFIED_WITH_EXCEPTIONS = "CERTIFIED WITH EXCEPTIONS"
    PARTIAL = "PARTIAL"
    NOT_CERTIFIED = "NOT CERTIFIED"

    @property
    def certifies(self) -> bool:
        return self in (VerdictKind.CERTIFIED, VerdictKind.CERTIFIED_WITH_EXCEPTIONS)


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    tiers: tuple[str, ...]
    #: applicable catalogue checks of the tiers that ran which this run did not run (a selection)
    missing: tuple[str, ...] = ()
    #: check id -> status, for expected failures and advice (the certificate's exceptions)
    exceptions: dict[str, str] = field(default_factory=dict)
    blocking: dict[str, str] = field(default_factory=dict)

    def headline(self) -> str:
        tiers = " + ".join(self.tiers)
        if self.kind is VerdictKind.PARTIAL:
            return f"PARTIAL ({len(self.missing)} applicable {tiers} checks not selected; no certificate)"
        if self.kind is VerdictKind.CERTIFIED_WITH_EXCEPTIONS:
            return f"CERTIFIED WITH EXCEPTIONS ({tiers} tier; exceptions: {', '.join(sorted(self.exceptions))})"
        if self.kind is VerdictKind.CERTIFIED:
            return f"CERTIFIED ({tiers} tier{'s' if len(self.tiers) > 1 else ''})"
        return "NOT CERTIFIED"


def tier_of(check_id: str) -> str:
    return "e2e" if check_id.startswith("e2e.") else "contract"


def status_of(result: Any) -> str:
    """A result's status string: a ``CheckResult``'s outcome value, or a report entry's ``status``."""
    outcome = getattr(result, "outcome", None)
    return str(outcome.value) if outcome is not None else str(result["status"])


def judge(results: Mapping[str, Any], expected: Iterable[str], *, e2e: bool,
          strict: bool = False) -> Verdict:
    """The verdict for ``results`` (check id -> ``CheckResult``, or a report entry with a "status").

    ``expected`` is the catalogue's ids that apply to this Airflow; with ``e2e`` False the e2e tier is
    not part of what the certificate covers (it is opt-in), so its checks are not missing."""
    tiers = ("contract", "e2e") if e2e else ("contract",)
    statuses = {cid: status_of(r) for cid, r in results.items()}
    blocking = {cid: s for cid, s in statuses.items() if s in BLOCKING or (strict and s in EXCEPTIONS)}
    exceptions = {cid: s for cid, s in statuses.items() if s in EXCEPTIONS}
    missing = tuple(sorted(cid for cid in expected if tier_of(cid) in tiers and cid not in statuses))
    if blocking or not statuses:
        kind = VerdictKind.NOT_CERTIFIED
    elif missing:
        kind = VerdictKind.PARTIAL
    elif any(s == "expected failure" for s in exceptions.values()):
        kind = VerdictKind.CERTIFIED_WITH_EXCEPTIONS
    else:
        kind = VerdictKind.CERTIFIED
    return Verdict(kind, tiers, missing, exceptions, blocking)
