"""Certification reports: ``report.json`` (for machines and ``matrix``) and ``report.md`` (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_ICONS = {"passed": "✅ passed", "failed": "❌ failed", "not supported": "➖ not supported",
          "not applicable": "· not applicable", "expected failure": "⚠️ expected failure",
          "advice": "💡 advice", "inconclusive": "❔ inconclusive", "not run": "⏸ not run"}


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
    ]
    groups = report.get("failure_groups") or []
    if groups:
        lines += ["## Root causes (fix these first)", ""]
        for group in groups:
            cause = group["cause"].strip().replace("\n", " ")
            lines += [f"- **{len(group['checks'])} checks**: {cause}",
                      "  " + ", ".join(f"`{c}`" for c in group["checks"])]
        lines.append("")
    time_model = report.get("time_model")
    if time_model:
        cal = time_model["calibration"]
        lines += [f"Time model: scale {time_model['scale']:g}; calibration (worst of {cal['samples']} no-op tasks) "
                  f"round trip {cal['round_trip']:.3f} s, start {cal['start_latency']:.3f} s, report "
                  f"{cal['report_latency']:.3f} s, idle heartbeat {cal['heartbeat']:.4f} s; budgets: "
                  + ", ".join(f"{k} {v:g} s" for k, v in sorted(time_model["budgets"].items())), ""]
    lines += ["| check | clause | status | seconds |", "|---|---|---|---|"]
    for c in report["checks"]:
        lines.append(f"| `{c['id']}` | {c['clause']} | {_ICONS.get(c['status'], c['status'])} | {c['seconds']} |")
    details = [c for c in report["checks"] if c["status"] in ("failed", "inconclusive", "expected failure", "advice",
                                                                "not supported")]
    if details:
        lines += ["", "## Details", ""]
        for c in details:
            lines += [f"### `{c['id']}` — {c['status']}", "", f"{c['title']} (SPEC {c['clause']})", ""]
            if c["message"]:
                lines += ["```", c["message"].strip(), "```", ""]
    return "\n".join(lines) + "\n"
