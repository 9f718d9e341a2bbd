"""Writing a certificate's files: the one module that knows every format (JSON, Markdown, HTML, badge),
so that the formats themselves (``report``, ``html_report``) never import each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.reporting.html_report import render_html
from conformance.reporting.report import badge, render_markdown


def write_outputs(directory: Path, report: dict[str, Any]) -> list[Path]:
    """Write every certificate file into ``directory``; returns their paths (report.json first)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"report.json": json.dumps(report, indent=2, sort_keys=True, default=str) + "\n",
             "report.md": render_markdown(report),
             "report.html": render_html(report),
             "badge.json": json.dumps(badge(report), indent=2) + "\n"}
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
