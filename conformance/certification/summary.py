"""The summary of a certification as lines: counts per area, root causes, leftovers, the verdict.

Pure: it reads a ``Certificate`` and returns ``(text, style)`` pairs. The pytest session writes them
through pytest's terminal (coloured when it has colour), the CLI's ``certify`` prints them; the verdict
is what a reader looks for first, so it is last and coloured.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from conformance.certification.certificate import STATUS_ORDER, Certificate
from conformance.certification.verdict import VerdictKind
from conformance.groundtruth.sandbox import WORK_LEFT

Line = tuple[str, dict[str, bool]]

_VERDICT_COLOUR = {VerdictKind.CERTIFIED: {"green": True, "bold": True},
                   VerdictKind.CERTIFIED_WITH_EXCEPTIONS: {"yellow": True, "bold": True},
                   VerdictKind.PARTIAL: {"yellow": True, "bold": True},
                   VerdictKind.NOT_CERTIFIED: {"red": True, "bold": True}}
_RED: dict[str, bool] = {"red": True}
_YELLOW: dict[str, bool] = {"yellow": True}
_PLAIN: dict[str, bool] = {}


def summary_lines(cert: Certificate) -> list[Line]:
    lines: list[Line] = []
    by_area: dict[str, Counter[str]] = {}
    for check_id, result in cert.results.items():
        by_area.setdefault(check_id.split(".")[0], Counter())[result.outcome.value] += 1
    shown = [s.value for s in STATUS_ORDER if any(c[s.value] for c in by_area.values())]
    lines.append((f"{'area':<12} " + " ".join(f"{s:>{max(len(s), 6)}}" for s in shown), _PLAIN))
    for area in sorted(by_area):
        lines.append((f"{area:<12} " + " ".join(f"{by_area[area][s]:>{max(len(s), 6)}}" for s in shown), _PLAIN))
    preflight = str(cert.run.get("preflight") or "passed")
    if preflight != "passed":
        lines.append((f"PREFLIGHT FAILED (nothing else was run): {preflight}", _RED))
    for group in cert.failure_groups():
        lines.append((f"{len(group['checks'])} checks share one cause (fix it first): {group['cause']}", _RED))
        lines.append((f"    {', '.join(group['checks'])}", _PLAIN))
    for check_id, result in sorted(cert.results.items()):
        for leak in result.leaks:
            lines.append((f"late work (ran after its check had ended), seen during {check_id}: {leak}", _YELLOW))
    for leftover in cert.leftovers:
        if leftover.startswith(WORK_LEFT):
            lines.append((f"work left behind: {leftover.removeprefix(WORK_LEFT)}", _YELLOW))
        else:
            lines.append((f"process left running at the end of the session (ended by the suite): {leftover}",
                          _YELLOW))
    inherited = cert.inherited
    if inherited is not None:
        lines += [(f"Inherited: {inherited.base_path} fails {len(inherited.check_ids)} of these checks too (same "
                   f"session): {', '.join(inherited.check_ids)}", _PLAIN),
                  ("  They are your base class's deviations (see the suite's reports/FINDINGS.md). To certify your "
                   "own code, paste under [tool.executor-conformance] in pyproject.toml:", _PLAIN),
                  (f"  {inherited.expected_failures_toml()}", _PLAIN)]
    coverage = cert.coverage
    if coverage is not None:
        lines.append((f"Coverage of {coverage['package']} during certification: {coverage['percent']:.1f}% of lines "
                      f"and branches ({len(coverage['files'])} files; the report lists the lines no check reached)",
                      _PLAIN))
    verdict = cert.verdict
    if verdict.kind is VerdictKind.PARTIAL:
        more = f", ... ({len(verdict.missing) - 6} more in the report)" if len(verdict.missing) > 6 else ""
        lines.append((f"Not selected ({len(verdict.missing)}): {', '.join(verdict.missing[:6])}{more}", _PLAIN))
    if verdict.exceptions:
        listed = ", ".join(f"{cid} ({status})" for cid, status in sorted(verdict.exceptions.items()))
        lines.append((f"Exceptions: {listed}" + ("  [--strict: not accepted]" if cert.strict else ""), _PLAIN))
    if any(r.outcome.value == "inconclusive" for r in cert.results.values()):
        lines.append(("Inconclusive checks ran out of time while the backend was still making progress (or the "
                      "--max-minutes ceiling ended them): re-run with a larger time scale or ceiling (a certificate "
                      "needs none).", _YELLOW))
    lines.append((f"VERDICT: {cert.label} is {verdict.headline()} ({cert.counts_text()})",
                  _VERDICT_COLOUR[verdict.kind]))
    return lines


_ANSI = {"red": "31", "green": "32", "yellow": "33", "bold": "1"}


def ansi(text: str, style: dict[str, bool], colour: bool) -> str:
    """``text`` with ``style`` as ANSI escapes when ``colour`` (a terminal), else unchanged."""
    codes = [_ANSI[name] for name, on in style.items() if on and name in _ANSI]
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if colour and codes else text


def publish(cert: Certificate, report_dir: Any, step_summary: Any) -> list[str]:
    """Write the certificate files (``report_dir``) and GitHub's step summary (``step_summary``), each when
    given; returns the lines saying where."""
    from pathlib import Path

    from conformance.reporting.files import write_outputs
    from conformance.reporting.report import append_step_summary

    if report_dir is None and not step_summary:
        return []
    report = cert.record()
    said = []
    if report_dir is not None:
        paths = write_outputs(Path(report_dir), report)
        said.append(f"report: {paths[0].parent}/ ({', '.join(p.name for p in paths)})")
    if step_summary:  # GitHub Actions renders this file on the job's page
        append_step_summary(Path(step_summary), report)
    return said
