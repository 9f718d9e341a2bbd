"""Merge certification reports into Markdown: one table per executor, check x Airflow version.

A table per executor keeps each one readable at 100 columns however many executors are merged, and
makes its columns one executor's history across Airflow versions. A *regression* is a check that
fails in a column after passing in the previous column (the version before); a *fix* is the reverse.
Comparing with any earlier column instead would flag every later column again.
"""

from __future__ import annotations

from typing import Any

from conformance.certification.verdict import BLOCKING
from conformance.reporting.report import verdict_of

_CELL = {"passed": "✅", "failed": "❌", "not supported": "➖", "not applicable": "·",
         "expected failure": "⚠️", "advice": "💡", "inconclusive": "❔", "not run": "⏸"}
_SHORT_VERDICT = {"CERTIFIED": "cert", "CERTIFIED WITH EXCEPTIONS": "cert*", "PARTIAL": "partial",
                  "NOT CERTIFIED": "no"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in version.split(".")[:3])


def render_matrix(reports: list[dict[str, Any]]) -> str:
    executors = sorted({r["executor"] for r in reports})
    lines: list[str] = []
    regressions: list[str] = []
    fixes: list[str] = []
    for executor in executors:
        columns = sorted((r for r in reports if r["executor"] == executor),
                         key=lambda r: _version_key(r["airflow_version"]))
        lines += _table(executor, columns, regressions, fixes)
    lines += ["Legend: " + ", ".join(f"{icon} {name}" for name, icon in _CELL.items())
              + "; **R** regression (failed after passing on the previous version), **F** fixed; verdicts: "
              + ", ".join(f"{short} = {long.lower()}" for long, short in _SHORT_VERDICT.items()) + "."]
    if regressions:
        lines += ["", f"Regressions ({len(regressions)}): " + "; ".join(regressions)]
    if fixes:
        lines += ["", f"Fixes ({len(fixes)}): " + "; ".join(fixes)]
    return "\n".join(lines) + "\n"


def _table(executor: str, columns: list[dict[str, Any]], regressions: list[str], fixes: list[str]) -> list[str]:
    statuses = [{c["id"]: c["status"] for c in r["checks"]} for r in columns]
    versions = [str(r["airflow_version"]) for r in columns]
    lines = [f"### `{executor}`", "", "| check | " + " | ".join(versions) + " |", "|---|" + "---|" * len(columns)]
    for cid in sorted({cid for s in statuses for cid in s}):
        cells = []
        for i, status in enumerate(s.get(cid, "") for s in statuses):
            previous = statuses[i - 1].get(cid) if i else None
            cell = _CELL.get(status, "")
            where = f"{cid} ({executor.rsplit('.', 1)[-1]} @ {versions[i]})"
            if previous == "passed" and status in BLOCKING:
                cell += " **R**"
                regressions.append(where)
            elif previous in BLOCKING and status == "passed":
                cell += " **F**"
                fixes.append(where)
            cells.append(cell)
        lines.append(f"| `{cid}` | " + " | ".join(cells) + " |")
    lines.append("| verdict | " + " | ".join(_SHORT_VERDICT.get(verdict_of(r), verdict_of(r)) for r in columns)
                 + " |")
    return [*lines, ""]
