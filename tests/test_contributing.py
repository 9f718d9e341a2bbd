"""CONTRIBUTING's example check is a tested template: pasted as it is, it registers under a new id, passes
on the reference executor and fails on a broken one."""

from __future__ import annotations

import re
from pathlib import Path

from conformance import checks
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness.catalog import CATALOG
from conformance.harness.outcomes import Outcome
from conformance.harness.profile import ExecutorProfile
from conformance.harness.runner import run_check
from reference_executors import LocalExecutor
from tests.broken_executors import ForgetsRunning

GUIDE = (Path(__file__).resolve().parent.parent / "docs" / "CONTRIBUTING.md").read_text()


def test_the_contributing_example_is_a_working_check(sandbox: Sandbox) -> None:
    source = re.search(r"```python\n(.*?)```", GUIDE, re.S)
    assert source, "CONTRIBUTING.md has no python example"
    before = set(checks.catalogue())
    exec(compile(source.group(1), "CONTRIBUTING.md", "exec"), {})  # paste it, as an author would
    added = set(CATALOG) - before
    try:
        assert len(added) == 1, f"the example must register one new check id, registered {added}"
        spec = CATALOG[added.pop()]
        assert run_check(spec, ExecutorProfile(executor_class=LocalExecutor), sandbox).outcome is Outcome.PASSED
        caught = run_check(spec, ExecutorProfile(executor_class=ForgetsRunning), sandbox)
        assert caught.outcome is Outcome.FAILED and "has_task(ti) is False" in caught.message, caught.message
    finally:
        for check_id in set(CATALOG) - before:
            del CATALOG[check_id]
