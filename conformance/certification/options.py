"""What a certification is asked to do, as one frozen value: ``CertifyOptions``.

Read by the core (``conformance.certify``); the CLI builds it from its arguments. Bad input that needs no
Airflow (an unknown check id, a ceiling that is not positive) is refused here, in one line, before
anything is imported or started.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CertifyOptions:
    """How to certify. Every field has the default a certificate is issued with."""

    #: constructor keyword arguments (when the executor is given by its dotted path)
    executor_kwargs: dict[str, Any] = field(default_factory=dict)
    #: dotted path of a ``BackendDriver`` (SPEC HB-5 fault injection); each overlapped worker loads its own
    backend_driver: str | None = None
    #: run only these check ids (the verdict is then PARTIAL); empty: the whole contract tier
    checks: tuple[str, ...] = ()
    #: check id -> reason: failures the author waives (CERTIFIED WITH EXCEPTIONS)
    expected_failures: dict[str, str] = field(default_factory=dict)
    strict: bool = False
    e2e: bool = False
    #: multiplies every budget of the time model (a slow backend on a busy CI runner)
    time_scale: float = 1.0
    seed: int | None = None
    hypothesis_profile: str = "ci"
    #: a ceiling for the whole run: what it cuts short is *inconclusive*, never a failure or a pass
    max_minutes: float | None = None
    #: checks run at once, each on its own executor and sandbox in its own process; None sizes it to the
    #: machine and the executor's round trip (``overlap.auto_workers``); 1 runs them one after another
    overlap: int | None = None
    #: where the state machine writes the reproducer of a failure (default: a temporary directory)
    reproducer_dir: Path | None = None
    #: re-run failed checks against the executor's Airflow base class, naming inherited deviations
    inherited: bool = True

    def __post_init__(self) -> None:
        from conformance.harness.profile import ProfileError

        if not self.time_scale > 0:
            raise ProfileError(f"time scale must be greater than 0, got {self.time_scale}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ProfileError(f"--max-minutes must be greater than 0, got {self.max_minutes}")
        if self.overlap is not None and self.overlap < 1:
            raise ProfileError(f"overlap must be at least 1 (1: one check at a time), got {self.overlap}")
        validate_check_ids(self.checks, "checks")
        validate_check_ids(self.expected_failures, "expected failures")
        for check_id, reason in self.expected_failures.items():
            if not isinstance(reason, str) or not reason.strip():
                raise ProfileError(f"expected failure {check_id!r} needs a reason (a non-empty string)")

    def as_dict(self) -> dict[str, Any]:
        """The options a certificate records (enough to re-run it the same way)."""
        return {"executor_kwargs": dict(self.executor_kwargs), "backend_driver": self.backend_driver,
                "time_scale": self.time_scale, "strict": self.strict, "e2e": self.e2e, "coverage": False,
                "max_minutes": self.max_minutes, "overlap": self.overlap,
                "hypothesis": {"profile": self.hypothesis_profile, "seed": self.seed},
                "expected_failures": dict(self.expected_failures),
                "selection": {"checks": sorted(self.checks), "keyword": None, "markexpr": None, "deselected": 0}}


def validate_check_ids(ids: Iterable[str], where: str) -> None:
    """Unknown ids are one line, with the nearest known id for a typo."""
    from conformance import checks
    from conformance.harness.profile import ProfileError

    unknown = sorted(set(ids) - set(checks.catalogue()))
    if unknown:
        hints = [checks.suggest(cid) for cid in unknown]
        raise ProfileError(f"unknown check id(s) in {where}: "
                           + ", ".join(f"{cid}{f' (did you mean {hint}?)' if hint else ''}"
                                       for cid, hint in zip(unknown, hints))
                           + " (see `executor-conformance checks`)")
