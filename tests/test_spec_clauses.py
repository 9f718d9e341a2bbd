"""SPEC.md clause ids are checked data: every check names a clause SPEC.md has, and every clause is judged
by a check or said not to be (with why)."""

from __future__ import annotations

import re
from pathlib import Path

from conformance import checks

SPEC = (Path(__file__).resolve().parent.parent / "docs" / "SPEC.md").read_text()
#: ``- HB-7 ...`` items, and sections judged as a whole (``## PROP — ...``: the state machine's invariants)
CLAUSES = set(re.findall(r"^- ([A-Z0-9]+-\d+[a-z]?) ", SPEC, re.M))
SECTIONS = set(re.findall(r"^## ([A-Z0-9]+) ", SPEC, re.M))
#: clauses no check judges, and why
NOT_CHECKED = {"ATTR-3": "report-only: is_production and unknown attributes are shown in the report, never judged"}


def test_every_check_names_a_clause_of_the_spec() -> None:
    unknown = {cid: spec.clause for cid, spec in checks.catalogue().items()
               if spec.clause not in CLAUSES and spec.clause not in SECTIONS}
    assert not unknown, f"checks citing clauses SPEC.md does not have: {unknown}"


def test_every_clause_is_judged_or_said_not_to_be() -> None:
    used = {spec.clause for spec in checks.catalogue().values()}
    unjudged = sorted(c for c in CLAUSES if c not in used and c.split("-")[0] not in used and c not in NOT_CHECKED)
    assert not unjudged, f"SPEC clauses no check judges (add a check, or list them in NOT_CHECKED): {unjudged}"
    stale = sorted(c for c in NOT_CHECKED if c not in CLAUSES or c in used)
    assert not stale, f"NOT_CHECKED lists clauses that are gone or judged after all: {stale}"


def test_the_state_machine_judges_every_prop_clause() -> None:
    from conformance.harness.stateful import ExecutorMachine

    props = {c for c in CLAUSES if c.startswith("PROP-")}
    assert set(ExecutorMachine.CLAUSES) == props, (sorted(props), sorted(ExecutorMachine.CLAUSES))
    # PROP-11: every rule's executor calls (_guarded); PROP-12: what the adopting executor keeps
    judged_by_a_step = {"_guarded", "adopt_into_fresh_executor"}
    assert set(ExecutorMachine.CLAUSES.values()) <= set(ExecutorMachine.PROPERTIES) | judged_by_a_step
