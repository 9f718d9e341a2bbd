"""A certification's result as one typed object, and the ``report.json`` record built from it.

Both routes -- the pytest session and the pytest-free ``certify()`` -- end in a ``Certificate``: the
results (one ``CheckResult`` per check, expected failures and ``--strict`` already applied), what the
run used, what it found outside the checks, and the verdict. The summary, the report files, ``diff`` and
``matrix`` read it or its record; nothing is assembled twice.
"""

from __future__ import annotations

import functools
import platform
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import conformance
from conformance.certification.verdict import BLOCKING, Verdict, judge
from conformance.groundtruth.sandbox import WORK_LEFT
from conformance.harness.outcomes import CheckResult, Outcome

if TYPE_CHECKING:
    from conformance.certification.inherited import Inherited

#: the order in which counts are shown (tables, the verdict line)
STATUS_ORDER: tuple[Outcome, ...] = (Outcome.PASSED, Outcome.FAILED, Outcome.INCONCLUSIVE, Outcome.NOT_RUN,
                                     Outcome.NOT_SUPPORTED, Outcome.NOT_APPLICABLE, Outcome.EXPECTED_FAILURE,
                                     Outcome.ADVICE)


@dataclass
class Certificate:
    """What one certification found. ``record()`` is the ``report.json`` document."""

    label: str
    results: dict[str, CheckResult]
    #: what the checks ran with: executor_package, capabilities, time_model, preflight, seeds, expected_failures
    run: dict[str, Any]
    #: the options that reproduce the run (``report.json`` ``options``)
    options: dict[str, Any]
    e2e: bool = False
    strict: bool = False
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    leftovers: list[str] = field(default_factory=list)
    #: failures the executor's Airflow base class has too (same run), or None
    inherited: Inherited | None = None
    coverage: dict[str, Any] | None = None

    @property
    def verdict(self) -> Verdict:
        from conformance import checks

        expected = [cid for cid, spec in checks.catalogue().items() if spec.applies()]
        return judge(self.results, expected, e2e=self.e2e, strict=self.strict)

    @property
    def certified(self) -> bool:
        return self.verdict.kind.certifies

    def failure_groups(self) -> list[dict[str, Any]]:
        return failure_groups(self.results)

    def counts(self) -> Counter[str]:
        return Counter(r.outcome.value for r in self.results.values())

    def counts_text(self) -> str:
        counts = self.counts()
        return ", ".join(f"{counts[s.value]} {s.value}" for s in STATUS_ORDER if counts[s.value])

    def write(self, directory: Any) -> list[Any]:
        """Write report.json, report.md, report.html and badge.json into ``directory``; returns the paths."""
        from pathlib import Path

        from conformance.reporting.files import write_outputs

        return write_outputs(Path(directory), self.record())

    def record(self) -> dict[str, Any]:
        """The certificate as ``report.json`` (schema ``conformance/reporting/schemas/report.schema.json``)."""
        from conformance import checks
        from conformance.harness import airflow_compat as compat
        from conformance.reporting.report import SCHEMA_VERSION

        entries = []
        for check_id in sorted(self.results):
            spec, result = checks.get(check_id), self.results[check_id]
            entries.append({"id": check_id, "area": spec.area, "clause": spec.clause, "title": spec.title,
                            "status": result.outcome.value, "message": result.message,
                            "seconds": round(result.seconds, 3), "leaks": list(result.leaks), "cause": result.cause})
        verdict = self.verdict
        now = datetime.now(timezone.utc)
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": now.isoformat(timespec="seconds"),
            "duration_seconds": round((now - self.started).total_seconds(), 1),
            "suite_version": conformance.__version__,
            "airflow_version": compat.version_string(),
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "executor": self.label,
            "executor_package": self.run.get("executor_package") or executor_package(self.label),
            "verdict": verdict.kind.value,
            "certified": verdict.kind.certifies,
            "tiers": list(verdict.tiers),
            "missing": list(verdict.missing),
            "exceptions": verdict.exceptions,
            "options": self.options,
            "capabilities": self.run.get("capabilities", {}),
            "expected_failures": self.run.get("expected_failures", {}),
            "counts": dict(self.counts()),
            "time_model": self.run.get("time_model"),
            "preflight": self.run.get("preflight"),
            "failure_groups": self.failure_groups(),
            "inherited_failures": ({"base": self.inherited.base_path, "checks": list(self.inherited.check_ids)}
                                   if self.inherited is not None else None),
            "leftover_processes": [x for x in self.leftovers if not x.startswith(WORK_LEFT)],
            "work_left_queued": [x.removeprefix(WORK_LEFT) for x in self.leftovers if x.startswith(WORK_LEFT)],
            "coverage": self.coverage,
            "checks": entries,
        }


def failure_groups(results: Mapping[str, CheckResult]) -> list[dict[str, Any]]:
    """Checks that failed, were inconclusive or did not run for one root cause, largest group first: the
    summary tells the author to fix that cause first, instead of reading twenty messages."""
    groups: dict[str, list[str]] = {}
    for check_id, result in sorted(results.items()):
        if result.outcome.value in BLOCKING and result.cause:
            groups.setdefault(result.cause, []).append(check_id)
    return [{"cause": cause, "checks": ids}
            for cause, ids in sorted(groups.items(), key=lambda g: -len(g[1])) if len(ids) > 1]


@functools.lru_cache(maxsize=8)
def executor_package(label: str) -> dict[str, str | None]:
    """The distribution that ships the executor's module, and its version (None for a loose module)."""
    from importlib import metadata

    top = label.replace(":", ".").split(".")[0]
    dists = metadata.packages_distributions().get(top) or []
    if not dists:
        return {"name": top, "distribution": None, "version": None}
    try:
        version: str | None = metadata.version(dists[0])
    except metadata.PackageNotFoundError:
        version = None
    return {"name": top, "distribution": dists[0], "version": version}
