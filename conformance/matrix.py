"""Merge certification reports into one Markdown matrix: check x (executor, Airflow version).

Columns are grouped by executor and ordered by Airflow version, and named by short keys (explained
under the table) so the table stays readable at 100 columns. A *regression* is a check that fails in
a column after passing in the previous column of the same executor (the version before); a *fix* is
the reverse. Comparing with any earlier column instead would flag every later column again.
"""

from __future__ import annotations

from typing import Any

from conformance.report import verdict_of

_CELL = {"passed": "✅", "failed": "❌", "not supported": "➖", "not applicable": "·",
         "expected failure": "⚠️", "advice": "💡", "inconclusive": "❔", "not run": "⏸"}
_BAD = ("failed", "inconclusive", "not run")
_SHORT_VERDICT = {"CERTIFIED": "cert", "CERTIFIED WITH EXCEPTIONS": "cert*", "PARTIAL": "partial",
                  "NOT CERTIFIED": "no"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in version.split(".")[:3])


def render_matrix(reports: list[dict[str, Any]]) -> str:
    columns = sorted(reports, key=lambda r: (r["executor"], _version_key(r["airflow_version"])))
    statuses = [{c["id"]: c["status"] for c in r["checks"]} for r in columns]
    executors = list(dict.fromkeys(r["executor"] for r in columns))
    keys = [f"{chr(ord('A') + executors.index(r['executor']))}{r['airflow_version']}" for r in columns]
    lines = ["| check | " + " | ".join(keys) + " |", "|---|" + "---|" * len(columns)]
    regressions: list[str] = []
    fixes: list[str] = []
    for cid in sorted({cid for s in statuses for cid in s}):
        cells = []
        for i, report in enumerate(columns):
            status = statuses[i].get(cid, "")
            cell = _CELL.get(status, "")
            previous = statuses[i - 1].get(cid) if i and columns[i - 1]["executor"] == report["executor"] else None
            where = f"{cid} ({keys[i]})"
            if previous == "passed" and status in _BAD:
                cell += " **R**"
                regressions.append(where)
            elif previous in _BAD and status == "passed":
                cell += " **F**"
                fixes.append(where)
            cells.append(cell)
        lines.append(f"| `{cid}` | " + " | ".join(cells) + " |")
    lines.append("| verdict | " + " | ".join(_SHORT_VERDICT.get(verdict_of(r), verdict_of(r)) for r in columns) + " |")
    lines += ["", "Columns: " + "; ".join(f"{chr(ord('A') + i)} = `{e}`" for i, e in enumerate(executors))
              + " (the number is the Airflow version).",
              "Legend: " + ", ".join(f"{icon} {name}" for name, icon in _CELL.items())
              + "; **R** regression (failed after passing on the previous version), **F** fixed; verdicts: "
              + ", ".join(f"{short} = {long.lower()}" for long, short in _SHORT_VERDICT.items()) + "."]
    if regressions:
        lines += ["", f"Regressions ({len(regressions)}): " + "; ".join(regressions)]
    if fixes:
        lines += ["", f"Fixes ({len(fixes)}): " + "; ".join(fixes)]
    return "\n".join(lines) + "\n"
