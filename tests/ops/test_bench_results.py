"""How benchmark runs save their tables: a run of some benchmarks replaces only their own sections
of ``bench/RESULTS.md`` and the README block (so figures taken at different times stay side by
side, each with its own "measured on" line)."""

from __future__ import annotations

from bench.__main__ import merge, section
from bench._harness import Table


def table(title: str, value: int) -> Table:
    result = Table(title, ["figure"])
    result.add(value)
    return result


def test_a_run_replaces_its_own_sections_and_keeps_the_others() -> None:
    old = merge(
        "hand-written text outside any section is not kept\n",
        {
            "b10_detection": section("b10_detection", "monday", [table("Detection", 1)]),
            "b20_check_cost": section("b20_check_cost", "monday", [table("Check cost", 2)]),
            "soak": section("soak", "monday", [table("Soak", 3)]),
        },
    )
    assert "hand-written" not in old
    new = merge(old, {"b20_check_cost": section("b20_check_cost", "tuesday", [table("Check cost", 20)])})
    assert new.count("<!-- bench:") == 3
    assert new.index("Detection") < new.index("Check cost") < new.index("Soak")
    assert "_Measured on monday._" in new and "_Measured on tuesday._" in new
    assert "| 20 |" in new and "| 2 |" not in new
    assert merge(new, {}) == new
