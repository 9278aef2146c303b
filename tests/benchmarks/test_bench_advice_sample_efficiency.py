"""The sample-efficiency benchmark's statistics: variant means and the paired hybrid - RL-only
difference with its 95% t-interval, checked against hand-computed values."""

import math

import pytest

from benchmarks.bench_advice_sample_efficiency import markdown_table, paired_statistics


def _row(seed, variant, steps, capture, agreement=0.5, pnl=0.0, env_steps=None):
    return {"seed": seed, "variant": variant, "steps": steps, "env_steps": env_steps or steps,
            "oracle_capture": capture, "direction_agreement": agreement, "mean_daily_pnl": pnl}


def test_paired_difference_mean_se_and_t_interval_by_seed():
    # Differences 1, 2, 3 (seeds listed out of order): mean 2, sd 1, se 1/sqrt(3);
    # t(0.975, 2 dof) = 4.302653, so the half-width is 4.302653 / sqrt(3) = 2.484138.
    runs = [_row(2, "hybrid", 10, 12.0), _row(1, "rl_only", 10, 5.0), _row(3, "hybrid", 10, 3.0),
            _row(1, "hybrid", 10, 6.0), _row(3, "rl_only", 10, 0.0), _row(2, "rl_only", 10, 10.0)]
    [row] = paired_statistics(runs)
    assert row["steps"] == 10 and row["seeds"] == [1, 2, 3]
    assert row["hybrid"]["oracle_capture"] == pytest.approx(7.0)
    assert row["rl_only"]["oracle_capture"] == pytest.approx(5.0)
    d = row["difference"]["oracle_capture"]
    assert d["per_seed"] == {1: 1.0, 2: 2.0, 3: 3.0}
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(2.0)
    assert d["se"] == pytest.approx(1 / math.sqrt(3))
    assert d["lower"] == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert d["upper"] == pytest.approx(2.0 + 2.484138, abs=1e-6)
    assert row["difference"]["direction_agreement"]["mean"] == 0.0


def test_unpaired_seeds_and_missing_values_leave_the_difference_but_not_the_means():
    runs = [_row(1, "hybrid", 20, 0.4, env_steps=20480), _row(1, "rl_only", 20, 0.1, env_steps=20480),
            _row(2, "hybrid", 20, float("nan")), _row(2, "rl_only", 20, 0.3),
            _row(3, "hybrid", 20, 0.7),  # no RL-only run of seed 3
            _row(1, "hybrid", 10, 0.2), _row(1, "rl_only", 10, 0.0)]
    first, second = paired_statistics(runs)
    assert [first["steps"], second["steps"]] == [10, 20]
    assert second["env_steps"] == 20480
    assert second["seeds"] == [1, 2]
    assert second["hybrid"]["oracle_capture"] == pytest.approx(0.55)  # NaN skipped: (0.4 + 0.7) / 2
    d = second["difference"]["oracle_capture"]
    assert d["n"] == 1 and d["mean"] == pytest.approx(0.3)
    assert math.isnan(d["se"]) and math.isnan(d["lower"]) and math.isnan(d["upper"])
    table = markdown_table([first, second])
    assert "| 20 | 20,480 | 2 | 0.550 | 0.200 | +0.300 |" in table
