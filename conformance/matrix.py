"""Merge several certification reports into one Markdown matrix: check x (executor, Airflow)."""

from __future__ import annotations

from typing import Any

_CELL = {"passed": "✅", "failed": "❌", "not supported": "➖", "not applicable": "·",
         "expected failure": "⚠️", "advice": "💡", "inconclusive": "❔", "not run": "⏸"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in version.split(".")[:3])


def render_matrix(reports: list[dict[str, Any]]) -> str:
    """A regression (passed on an older Airflow, failed on a newer one, same executor) is marked."""
    columns = sorted(reports, key=lambda r: (r["executor"], _version_key(r["airflow_version"])))
    statuses = [{c["id"]: c["status"] for c in r["checks"]} for r in columns]
    check_ids = sorted({cid for s in statuses for cid in s})
    header = ["check"] + [f"{'.'.join(r['executor'].split('.')[-2:])} @ {r['airflow_version']}" for r in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    regressions = []
    for cid in check_ids:
        cells = []
        for i, report in enumerate(columns):
            status = statuses[i].get(cid, "")
            cell = _CELL.get(status, "")
            earlier = [statuses[j].get(cid) for j in range(i) if columns[j]["executor"] == report["executor"]]
            if status == "failed" and "passed" in earlier:
                cell = "❌ **regression**"
                regressions.append(f"{cid} ({report['executor']} @ {report['airflow_version']})")
            cells.append(cell)
        lines.append(f"| `{cid}` | " + " | ".join(cells) + " |")
    verdicts = " | ".join("**certified**" if r["certified"] else "**not certified**" for r in columns)
    lines.append(f"| verdict | {verdicts} |")
    legend = "Legend: " + ", ".join(f"{icon} {name}" for name, icon in _CELL.items())
    lines += ["", legend]
    if regressions:
        lines += ["", "Regressions: " + "; ".join(regressions)]
    return "\n".join(lines) + "\n"
