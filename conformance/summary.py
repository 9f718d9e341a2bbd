"""The terminal summary of a certification: counts per area, root causes, leftovers, the verdict.

Written once, by the process that saw every report (the xdist controller, or the only process), and
coloured when pytest's terminal has colour: the verdict is what a reader looks for first.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.verdict import VerdictKind

if TYPE_CHECKING:
    from conformance.session import ConformanceSession

_VERDICT_COLOUR = {VerdictKind.CERTIFIED: {"green": True, "bold": True},
                   VerdictKind.CERTIFIED_WITH_EXCEPTIONS: {"yellow": True, "bold": True},
                   VerdictKind.PARTIAL: {"yellow": True, "bold": True},
                   VerdictKind.NOT_CERTIFIED: {"red": True, "bold": True}}


def write_summary(session: ConformanceSession, terminalreporter: Any) -> None:
    from conformance.session import STATUS_ORDER

    write = terminalreporter.write_line
    terminalreporter.section("executor conformance")
    by_area: dict[str, Counter[str]] = {}
    for check_id, result in session.results.items():
        by_area.setdefault(check_id.split(".")[0], Counter())[result["status"]] += 1
    shown = [s for s in STATUS_ORDER if any(c[s] for c in by_area.values())]
    write(f"{'area':<12} " + " ".join(f"{s:>{max(len(s), 6)}}" for s in shown))
    for area in sorted(by_area):
        write(f"{area:<12} " + " ".join(f"{by_area[area][s]:>{max(len(s), 6)}}" for s in shown))
    preflight = str(session.run.get("preflight") or "passed")
    if preflight != "passed":
        write(f"PREFLIGHT FAILED (nothing else was run): {preflight}", red=True)
    for group in session.failure_groups():
        write(f"{len(group['checks'])} checks share one cause (fix it first): {group['cause']}", red=True)
        write(f"    {', '.join(group['checks'])}")
    for check_id, result in sorted(session.results.items()):
        for leak in result.get("leaks", []):
            write(f"late work (ran after its check had ended), seen during {check_id}: {leak}", yellow=True)
    for leftover in session.leftovers:
        write(f"process left running at the end of the session (ended by the suite): {leftover}", yellow=True)
    inherited = session.inherited()
    if inherited is not None:
        write(f"Inherited: {inherited.base_path} fails {len(inherited.check_ids)} of these checks too (same "
              f"session): {', '.join(inherited.check_ids)}")
        write("  They are your base class's deviations (see the suite's reports/FINDINGS.md). To certify your "
              "own code, paste under [tool.executor-conformance] in pyproject.toml:")
        write(f"  {inherited.expected_failures_toml()}")
    coverage = session.measure_coverage()
    if coverage is not None:
        write(f"Coverage of {coverage['package']} during certification: {coverage['percent']:.1f}% of lines and "
              f"branches ({len(coverage['files'])} files; the report lists the lines no check reached)")
    verdict = session.verdict()
    if verdict.kind is VerdictKind.PARTIAL:
        more = f", ... ({len(verdict.missing) - 6} more in the report)" if len(verdict.missing) > 6 else ""
        write(f"Not selected ({len(verdict.missing)}): {', '.join(verdict.missing[:6])}{more}")
    if verdict.exceptions:
        write("Exceptions: " + ", ".join(f"{cid} ({status})" for cid, status in sorted(verdict.exceptions.items()))
              + ("  [--strict: not accepted]" if session.settings.strict else ""))
    if any(r["status"] == "inconclusive" for r in session.results.values()):
        write("Inconclusive checks ran out of time while the backend was still making progress: re-run "
              "with a larger --conformance-time-scale (a certificate needs none).", yellow=True)
    write(f"VERDICT: {session.label} is {verdict.headline()} ({session.counts_text()})",
          **_VERDICT_COLOUR[verdict.kind])
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if session.report_dir is None and not step_summary:
        return
    from conformance.report import append_step_summary, write_outputs

    report = session.build_report()
    if session.report_dir is not None:
        paths = write_outputs(session.report_dir, report)
        write(f"report: {paths[0].parent}{os.sep} ({', '.join(p.name for p in paths)})")
    if step_summary:  # GitHub Actions renders this file on the job's page
        append_step_summary(Path(step_summary), report)
