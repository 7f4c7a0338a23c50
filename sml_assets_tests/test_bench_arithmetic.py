"""The arithmetic behind benchmark figures that are not a plain timing."""

from __future__ import annotations

import pytest

from benchmarks.bench_spark_remote import steady
from benchmarks.run_all import load_verdict


def test_the_steady_rate_is_extra_lines_per_extra_second_and_the_rest_is_fixed() -> None:
    # 100,000 lines in a 4 s query, 1,000,000 in 5 s: 900,000 more lines took 1 s more.
    per_s, fixed_s = steady(100_000, 25_000.0, 1_000_000, 200_000.0)
    assert per_s == pytest.approx(900_000)
    assert fixed_s == pytest.approx(4 - 100_000 / 900_000)


@pytest.mark.parametrize(("lines", "rate"), [(1_000_000, 250_000.0), (1_000_000, 300_000.0), (100_000, 25_000.0)])
def test_backlogs_too_close_for_a_steady_rate_are_refused(lines: int, rate: float) -> None:
    with pytest.raises(RuntimeError, match="too close for a steady rate"):
        steady(100_000, 25_000.0, lines, rate)


def test_the_header_says_under_load_only_when_a_1_minute_load_passed_the_core_count() -> None:
    assert "nothing else competed" in load_verdict([0.4, 0.6, 0.9], [1.5, 1.5, 1.2], 2)
    assert "measured under load" in load_verdict([2.1, 1.0, 0.9], [1.5, 1.5, 1.2], 2)
    assert "measured under load" in load_verdict([0.4, 0.6, 0.9], [2.5, 1.5, 1.2], 2)
