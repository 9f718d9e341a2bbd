"""Certificate files: ``report.json`` (the record, for machines, ``diff`` and ``matrix``), ``report.md``
(for people and GitHub's step summary), ``report.html`` (one self-contained page) and ``badge.json``
(a shields.io endpoint).

``report.json`` follows ``conformance/reporting/schemas/report.schema.json``; ``SCHEMA_VERSION`` changes when a
field changes meaning or goes away, so that tools reading old certificates can tell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("schemas") / "report.schema.json"

ICONS = {"passed": "✅ passed", "failed": "❌ failed", "not supported": "➖ not supported",
         "not applicable": "· not applicable", "expected failure": "⚠️ expected failure",
         "advice": "💡 advice", "inconclusive": "❔ inconclusive", "not run": "⏸ not run"}
_BADGE_COLOUR = {"CERTIFIED": "brightgreen", "CERTIFIED WITH EXCEPTIONS": "yellowgreen", "PARTIAL": "yellow",
                 "NOT CERTIFIED": "red"}


#: the order checks are listed in, what needs the reader first: failures, then what is unknown, then the rest
_READING_ORDER = ("failed", "inconclusive", "not run", "expected failure", "advice", "not supported",
                  "not applicable", "passed")


def failures_first(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checks in reading order (failed, inconclusive, not run, ..., passed), by id within a status."""
    rank = {status: i for i, status in enumerate(_READING_ORDER)}
    return sorted(checks, key=lambda c: (rank.get(c["status"], len(rank)), c["id"]))


def describe_time_model(time_model: dict[str, Any]) -> str:
    """The calibration and budgets in one sentence (Markdown, HTML and the console say the same)."""
    cal = time_model["calibration"]
    return (f"Time model: scale {time_model['scale']:g}; calibration (worst of {cal['samples']} no-op tasks) "
            f"round trip {cal['round_trip']:.3f} s, start {cal['start_latency']:.3f} s, report "
            f"{cal['report_latency']:.3f} s, idle heartbeat {cal['heartbeat']:.4f} s; budgets: "
            + ", ".join(f"{k} {v:g} s" for k, v in sorted(time_model["budgets"].items())))


def load_report(path: Path) -> dict[str, Any]:
    """A report.json (or a folder holding one); ValueError with a readable reason otherwise."""
    target = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {target}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{target} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "checks" not in data or "executor" not in data:
        raise ValueError(f"{target} is not an executor-conformance report")
    return data


def verdict_of(report: dict[str, Any]) -> str:
    """The verdict of a report, including reports written before ``verdict`` was recorded."""
    if report.get("verdict"):
        return str(report["verdict"])
    return "CERTIFIED" if report.get("certified") else "NOT CERTIFIED"


def badge(report: dict[str, Any]) -> dict[str, Any]:
    """A shields.io endpoint badge: ``https://img.shields.io/endpoint?url=<raw URL of badge.json>``."""
    verdict = verdict_of(report)
    return {"schemaVersion": 1, "label": f"airflow {report['airflow_version']} executor contract",
            "message": verdict.lower(), "color": _BADGE_COLOUR.get(verdict, "lightgrey")}


def _counts_line(report: dict[str, Any]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(report["counts"].items()))


def render_markdown(report: dict[str, Any], *, details: bool = True) -> str:
    verdict = verdict_of(report)
    tiers = " + ".join(report.get("tiers") or ["contract"])
    package = report.get("executor_package") or {}
    version = f" {package['version']}" if package.get("version") else ""
    lines = [
        f"# Executor conformance: `{report['executor']}`{version}",
        "",
        f"**{verdict}** ({tiers} tier) on Airflow {report['airflow_version']} (Python {report['python_version']}, "
        f"suite {report['suite_version']}{', ' + report['generated_at'] if report.get('generated_at') else ''}).",
        "",
        "Counts: " + _counts_line(report),
        "",
    ]
    if report.get("missing"):
        lines += [f"Partial run: {len(report['missing'])} applicable checks were not selected "
                  f"({', '.join(f'`{c}`' for c in report['missing'])}).", ""]
    if report.get("exceptions"):
        lines += ["Exceptions: " + ", ".join(f"`{c}` ({s})" for c, s in sorted(report["exceptions"].items())), ""]
    lines += ["Capabilities read from the executor: "
              + ", ".join(f"`{k}`" for k, v in sorted(report["capabilities"].items()) if v), ""]
    groups = report.get("failure_groups") or []
    if groups:
        lines += ["## Root causes (fix these first)", ""]
        for group in groups:
            cause = group["cause"].strip().replace("\n", " ")
            lines += [f"- **{len(group['checks'])} checks**: {cause}",
                      "  " + ", ".join(f"`{c}`" for c in group["checks"])]
        lines.append("")
    coverage = report.get("coverage")
    if coverage:
        lines += [f"Coverage of `{coverage['package']}` during certification: {coverage['percent']:.1f}% "
                  f"(lines and branches, scheduler side and task processes)", "",
                  "| file | covered | lines no check reached |", "|---|---|---|"]
        lines += [f"| `{f['file']}` | {f['percent']:.1f}% | {f['missing'] or '-'} |" for f in coverage["files"]]
        lines.append("")
    time_model = report.get("time_model")
    if time_model:
        lines += [describe_time_model(time_model), ""]
    lines += ["| check | clause | status | seconds |", "|---|---|---|---|"]
    for c in failures_first(report["checks"]):
        lines.append(f"| `{c['id']}` | {c['clause']} | {ICONS.get(c['status'], c['status'])} | {c['seconds']} |")
    shown = [c for c in failures_first(report["checks"])
             if c["status"] in ("failed", "inconclusive", "expected failure", "advice", "not supported")]
    if details and shown:
        lines += ["", "## Details", ""]
        for c in shown:
            lines += [f"### `{c['id']}` — {c['status']}", "", f"{c['title']} (SPEC {c['clause']})", ""]
            if c["message"]:
                lines += ["```", c["message"].strip(), "```", ""]
    return "\n".join(lines) + "\n"


def append_step_summary(path: Path, report: dict[str, Any]) -> None:
    """GitHub Actions' job summary: the Markdown report, failures folded so the page stays short."""
    text = render_markdown(report, details=False)
    failing = [c for c in report["checks"] if c["status"] in ("failed", "inconclusive")]
    for c in failing:
        text += (f"\n<details><summary><code>{c['id']}</code> — {c['status']}</summary>\n\n"
                 f"```\n{c['message'].strip()}\n```\n</details>\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text + "\n")
