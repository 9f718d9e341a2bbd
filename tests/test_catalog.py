"""The catalogue refuses what would silently weaken the suite: unknown areas, unknown capabilities."""

from __future__ import annotations

import pytest

from conformance import checks
from conformance.harness.capabilities import DECLARED, explain_unmet, unmet
from conformance.harness.catalog import AREAS, check


def test_a_misspelt_capability_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="'adoptoin', which is not a declared capability"):
        check("adoption.typo_in_needs", clause="ADOPT-9", title="t", expects="e", fix="f", needs=("adoptoin",))


def test_an_unknown_area_is_refused() -> None:
    with pytest.raises(ValueError, match="not in a known area"):
        check("heartbeats.plural", clause="HB-9", title="t", expects="e", fix="f")


def test_every_check_needs_only_declared_capabilities_and_lives_in_a_declared_area() -> None:
    for spec in checks.catalogue().values():
        assert spec.area in AREAS
        assert all(n.removeprefix("!") in DECLARED for n in spec.needs), spec.id


def test_unknown_check_ids_get_a_suggestion() -> None:
    with pytest.raises(KeyError, match=r"did you mean heartbeat\.priority_order"):
        checks.get("heartbeat.priority_ordr")


def test_capability_gates_read_the_right_way_round() -> None:
    assert unmet(("!adoption",), {"adoption": True}) == ["!adoption"]
    assert explain_unmet(["!adoption"]).startswith("applies only to executors that cannot adopt")
    assert explain_unmet(["revoke"]).startswith("applies only to executors that implement revoke_task")
