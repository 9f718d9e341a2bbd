"""``executor-conformance diff OLD NEW``: what changed between two certificates.

The regression-suite use: run the suite on every change (or every Airflow upgrade), keep the last
report, and fail the build when a check that passed now fails. A check newly failing is a regression
whatever else happened; a fix, a changed message or a check that appeared or went away is reported
but does not fail the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.certification.verdict import BLOCKING
from conformance.reporting.report import load_report, verdict_of


@dataclass
class ReportDiff:
    old_label: str
    new_label: str
    newly_failing: list[tuple[str, str, str]] = field(default_factory=list)  # (id, old status, new status)
    newly_passing: list[tuple[str, str, str]] = field(default_factory=list)
    other_changes: list[tuple[str, str, str]] = field(default_factory=list)
    changed_messages: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    verdicts: tuple[str, str] = ("", "")

    @property
    def regressed(self) -> bool:
        return bool(self.newly_failing)

    def render(self) -> str:
        lines = [f"old: {self.old_label} -> {self.verdicts[0]}", f"new: {self.new_label} -> {self.verdicts[1]}"]
        sections = [("newly failing", self.newly_failing), ("newly passing", self.newly_passing),
                    ("other status changes", self.other_changes)]
        for title, rows in sections:
            if rows:
                lines.append(f"{title} ({len(rows)}):")
                lines += [f"  {cid}: {old} -> {new}" for cid, old, new in rows]
        if self.changed_messages:
            lines.append(f"same status, changed message ({len(self.changed_messages)}):")
            lines += [f"  {cid}" for cid in self.changed_messages]
        if self.added:
            lines.append(f"only in new ({len(self.added)}): {', '.join(self.added)}")
        if self.removed:
            lines.append(f"only in old ({len(self.removed)}): {', '.join(self.removed)}")
        if len(lines) == 2:
            lines.append("no change in any check's status or message")
        lines.append("REGRESSION: a check that did not fail before fails now" if self.regressed
                     else "no regression")
        return "\n".join(lines)


def _label(report: dict[str, Any], path: Path) -> str:
    return f"{report['executor']} @ Airflow {report['airflow_version']} ({path})"


def diff_reports(old: dict[str, Any], new: dict[str, Any], old_path: Path = Path("old"),
                 new_path: Path = Path("new")) -> ReportDiff:
    before = {c["id"]: c for c in old["checks"]}
    after = {c["id"]: c for c in new["checks"]}
    result = ReportDiff(_label(old, old_path), _label(new, new_path), verdicts=(verdict_of(old), verdict_of(new)))
    for cid in sorted(set(before) & set(after)):
        was, now = before[cid]["status"], after[cid]["status"]
        if was == now:
            if was in BLOCKING and before[cid].get("message", "").strip() != after[cid].get("message", "").strip():
                result.changed_messages.append(cid)
        elif now in BLOCKING and was not in BLOCKING:
            result.newly_failing.append((cid, was, now))
        elif was in BLOCKING and now not in BLOCKING:
            result.newly_passing.append((cid, was, now))
        else:
            result.other_changes.append((cid, was, now))
    # A check that is new and fails is newly failing too: it did not fail in the old certificate.
    for cid in sorted(set(after) - set(before)):
        result.added.append(cid)
        if after[cid]["status"] in BLOCKING:
            result.newly_failing.append((cid, "(absent)", after[cid]["status"]))
    result.removed = sorted(set(before) - set(after))
    return result


def diff_paths(old: Path, new: Path) -> list[ReportDiff]:
    """Two reports, or two folders: folders are compared report by report, matched by relative path."""
    if old.is_dir() and new.is_dir() and not (old / "report.json").exists():
        pairs = []
        for found in sorted(new.rglob("report.json")):
            rel = found.relative_to(new)
            if (old / rel).exists():
                pairs.append((old / rel, found))
        if not pairs:
            raise ValueError(f"no report.json in {new} has a counterpart in {old}")
        return [diff_reports(load_report(a), load_report(b), a, b) for a, b in pairs]
    return [diff_reports(load_report(old), load_report(new), old, new)]
