"""Certification reports: ``report.json`` (for machines and ``matrix``) and ``report.md`` (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_ICONS = {"passed": "✅ passed", "failed": "❌ failed", "not supported": "➖ not supported",
          "not applicable": "· not applicable", "expected failure": "⚠️ expected failure",
          "advice": "💡 advice"}


def write_report(directory: Path, report: dict[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    md_path = directory / "report.md"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    md_path.write_text(render_markdown(report))
    return [json_path, md_path]


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "CERTIFIED" if report["certified"] else "NOT CERTIFIED"
    lines = [
        f"# Executor conformance: `{report['executor']}`",
        "",
        f"**{verdict}** on Airflow {report['airflow_version']} (Python {report['python_version']}, "
        f"suite {report['suite_version']}).",
        "",
        "Counts: " + ", ".join(f"{n} {s}" for s, n in sorted(report["counts"].items())),
        "",
        "Capabilities read from the executor: "
        + ", ".join(f"`{k}`" for k, v in sorted(report["capabilities"].items()) if v),
        "",
        "| check | clause | status | seconds |",
        "|---|---|---|---|",
    ]
    for c in report["checks"]:
        lines.append(f"| `{c['id']}` | {c['clause']} | {_ICONS.get(c['status'], c['status'])} | {c['seconds']} |")
    details = [c for c in report["checks"] if c["status"] in ("failed", "expected failure", "advice",
                                                                "not supported")]
    if details:
        lines += ["", "## Details", ""]
        for c in details:
            lines += [f"### `{c['id']}` — {c['status']}", "", f"{c['title']} (SPEC {c['clause']})", ""]
            if c["message"]:
                lines += ["```", c["message"].strip(), "```", ""]
    return "\n".join(lines) + "\n"
