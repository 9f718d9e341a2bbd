"""``report.html``: the certificate as one self-contained page for a CI artifact.

No network, no external file: inline CSS, a few lines of inline script for the status filter, and
``<details>`` elements so that each check expands without script. Every string from the report is
escaped (messages quote executor output).
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1f23}
h1{font-size:1.4em;margin-bottom:.2em}.meta{color:#586069}
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;font-weight:bold;color:#fff}
.v-CERTIFIED{background:#22863a}.v-CERTIFIED-WITH-EXCEPTIONS{background:#8a8a00}.v-PARTIAL{background:#b08800}
.v-NOT-CERTIFIED{background:#cb2431}
.filters label{margin-right:1em;white-space:nowrap}
details.check{border:1px solid #e1e4e8;border-radius:4px;margin:.3em 0;padding:.3em .6em}
details.check>summary{cursor:pointer}.clause{color:#586069}
.s-failed,.s-inconclusive{border-left:4px solid #cb2431!important}.s-passed{border-left:4px solid #22863a!important}
.s-expected-failure,.s-advice,.s-not-run{border-left:4px solid #b08800!important}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;white-space:pre-wrap}
.group{background:#fff5f5;border:1px solid #f1c0c0;padding:.5em;margin:.3em 0;border-radius:4px}
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #e1e4e8;text-align:left}
"""

_SCRIPT = """
// A link can open the page filtered: report.html#status=failed,inconclusive
var wanted=(location.hash.match(/status=([^&]*)/)||[])[1];
if(wanted){var keep=wanted.split(',');
  document.querySelectorAll('.filters input').forEach(function(b){b.checked=keep.indexOf(b.value)>=0;});}
function applyFilter(){
  var boxes=document.querySelectorAll('.filters input');var shown={};
  boxes.forEach(function(b){shown[b.value]=b.checked;});
  document.querySelectorAll('details.check').forEach(function(d){
    d.style.display=shown[d.dataset.status]?'':'none';});
}
document.querySelectorAll('.filters input').forEach(function(b){b.addEventListener('change',applyFilter);});
applyFilter();
"""


def _slug(text: str) -> str:
    return text.replace(" ", "-")


def render_html(report: dict[str, Any]) -> str:
    from conformance.reporting.report import ICONS, describe_time_model, failures_first, verdict_of

    e = html.escape
    verdict = verdict_of(report)
    counts = Counter(c["status"] for c in report["checks"])
    package = report.get("executor_package") or {}
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(verdict)}: {e(report['executor'])} on Airflow {e(report['airflow_version'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Executor conformance: <code>{e(report['executor'])}</code>"
        f"{' ' + e(str(package['version'])) if package.get('version') else ''}</h1>",
        f"<p><span class='verdict v-{_slug(verdict)}' id='verdict'>{e(verdict)}</span> "
        f"({e(' + '.join(report.get('tiers') or ['contract']))} tier) on Airflow {e(report['airflow_version'])}</p>",
        f"<p class='meta'>Python {e(report['python_version'])} · {e(str(report.get('platform', '')))} · suite "
        f"{e(report['suite_version'])} · {e(str(report.get('generated_at', '')))}</p>",
    ]
    if report.get("missing"):
        parts.append(f"<p>Partial run: {len(report['missing'])} applicable checks not selected: "
                     + ", ".join(f"<code>{e(c)}</code>" for c in report["missing"]) + "</p>")
    if report.get("exceptions"):
        parts.append("<p>Exceptions: " + ", ".join(f"<code>{e(c)}</code> ({e(s)})"
                                                  for c, s in sorted(report["exceptions"].items())) + "</p>")
    groups = report.get("failure_groups") or []
    if groups:
        parts.append("<h2>Root causes (fix these first)</h2>")
        for group in groups:
            parts.append(f"<div class='group'><b>{len(group['checks'])} checks</b>: {e(group['cause'])}<br>"
                         + ", ".join(f"<code>{e(c)}</code>" for c in group["checks"]) + "</div>")
    coverage = report.get("coverage")
    if coverage:
        parts.append(f"<h2>Coverage of <code>{e(coverage['package'])}</code>: {coverage['percent']:.1f}%</h2>"
                     "<table><tr><th>file</th><th>covered</th><th>lines no check reached</th></tr>"
                     + "".join(f"<tr><td><code>{e(f['file'])}</code></td><td>{f['percent']:.1f}%</td>"
                               f"<td>{e(f['missing'] or '-')}</td></tr>" for f in coverage["files"])
                     + "</table>")
    if report.get("time_model"):
        parts.append(f"<h2>Time model</h2><p class='time-model'>{e(describe_time_model(report['time_model']))}</p>")
    parts.append("<h2>Checks</h2><p class='filters'>Show: " + "".join(
        f"<label><input type='checkbox' value='{_slug(status)}' checked> {e(ICONS.get(status, status))} "
        f"({n})</label>" for status, n in sorted(counts.items())) + "</p>")
    for c in failures_first(report["checks"]):
        opened = " open" if c["status"] in ("failed", "inconclusive") else ""
        body = f"<p>{e(c['title'])}</p>"
        if c.get("message"):
            body += f"<pre>{e(c['message'].strip())}</pre>"
        parts.append(
            f"<details class='check s-{_slug(c['status'])}' data-status='{_slug(c['status'])}' "
            f"id='check-{e(c['id'])}'{opened}><summary><code>{e(c['id'])}</code> "
            f"<span class='clause'>SPEC {e(c['clause'])}</span> — {e(ICONS.get(c['status'], c['status']))} "
            f"<span class='clause'>({c['seconds']} s)</span></summary>{body}</details>")
    parts += [f"<script>{_SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
