"""The Apex evaluation simulator on hand-made session sequences with hand-computed outcomes, its fast
replay against a bar-by-bar one, and the estimate's resampling.

Default rules: start $50,000, trailing drawdown $2,500, threshold locked at $50,100, target $3,000
(pass at a session's end with balance >= $53,000), 30 sessions at most. A session is its P&L path
(equity - the day's opening balance after each bar), its net P&L last."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid_trader.evaluation.apex import (
    BREACH, EXPIRED, PASS, ApexEstimation, ApexRules, apex_figures, apex_settings, block_bootstrap_indices,
    estimate_apex, session_paths, sessions_from_backtest, simulate_attempts, simulate_sequence,
)
from tests.conftest import PROJECT_ROOT

RULES = ApexRules()
QUICK = ApexEstimation(attempts=400, outer_resamples=50, resample_attempts=100, seed=3)


def test_three_days_of_1100_pass_on_the_third():
    # Balances 51,100, 52,200, 53,300: the first >= 53,000 is day 3's.
    day = [300.0, 1_100.0]
    assert simulate_sequence([day] * 3, RULES) == {"outcome": "pass", "days": 3, "balance": 53_300.0}
    assert simulate_sequence([day] * 2, RULES) == {"outcome": "expired", "days": 2, "balance": 52_200.0}


def test_an_intraday_dip_breaches_though_the_day_ends_up():
    # Fresh account: threshold 47,500; at -2,600 the equity is 47,400. The day would end +500.
    assert simulate_sequence([[-1_000.0, -2_600.0, 500.0]], RULES)["outcome"] == "breach"
    # Touching the threshold is a breach (-2,500: equity 47,500); a cent above is not.
    assert simulate_sequence([[-2_500.0, 500.0]], RULES)["outcome"] == "breach"
    assert simulate_sequence([[-2_499.99, 500.0]], RULES)["outcome"] == "expired"


def test_the_threshold_trails_the_intraday_high_of_the_same_day():
    # Up 1,000 (peak 51,000, threshold 48,500), then down to -1,500: equity 48,500 touches it.
    assert simulate_sequence([[1_000.0, -1_500.0, 0.0]], RULES)["outcome"] == "breach"
    assert simulate_sequence([[1_000.0, -1_499.0, 0.0]], RULES)["outcome"] == "expired"


def test_the_threshold_carries_from_day_to_day():
    # Day 1 peaks at 52,000 (threshold 49,500) and ends at 50,500; day 2's -1,000 dip reaches 49,500
    # and breaches, though a fresh account (threshold 47,500) survives it.
    day1, day2 = [2_000.0, 500.0], [-1_000.0, 200.0]
    assert simulate_sequence([day1, day2], RULES) == {"outcome": "breach", "days": 2, "balance": 50_500.0}
    assert simulate_sequence([day2], RULES)["outcome"] == "expired"


def test_a_threshold_locked_at_50100_breaches_on_a_smaller_later_dip():
    # Day 1 reaches 52,600: the threshold would be 50,100, where it locks; the day ends at 51,000.
    # Day 2 dips 1,000 to 50,000 <= 50,100: a breach, which a fresh account would survive.
    day1, day2 = [2_600.0, 1_000.0], [-600.0, -1_000.0, 200.0]
    assert simulate_sequence([day1, day2], RULES) == {"outcome": "breach", "days": 2, "balance": 51_000.0}
    assert simulate_sequence([day2, day2], RULES)["outcome"] == "expired"
    # Locked, it no longer trails: after a run-up to 53,200 and an end at 52,999, a dip to 50,101 is safe
    # (it would breach a threshold still trailing at 50,700).
    run_up, dip = [3_200.0, 2_999.0], [-2_898.0, 0.0]
    assert simulate_sequence([run_up, dip], RULES) == {"outcome": "expired", "days": 2, "balance": 52_999.0}


def test_the_consistency_rule_delays_the_pass():
    rules = dataclasses.replace(RULES, consistency_fraction=0.3)
    days = [[2_000.0]] + [[500.0]] * 12
    # Without the rule: 52,000, 52,500, 53,000 -> pass on day 3.
    assert simulate_sequence(days, RULES) == {"outcome": "pass", "days": 3, "balance": 53_000.0}
    # With it the best day (2,000) must be <= 0.3 x the total profit: total >= 6,666.67. After day k
    # the total is 2,000 + 500 (k - 1): day 10 has 6,500 (0.3 x = 1,950, no), day 11 has 7,000 (2,100).
    assert simulate_sequence(days, rules) == {"outcome": "pass", "days": 11, "balance": 57_000.0}


def test_max_days_expire_the_attempt():
    hundred = [[100.0]] * 30
    assert simulate_sequence(hundred, dataclasses.replace(RULES, max_days=5)) == {
        "outcome": "expired", "days": 5, "balance": 50_500.0}
    # 30 days of +100 reach 53,000 on the last allowed day: a pass, not an expiry.
    assert simulate_sequence(hundred, RULES) == {"outcome": "pass", "days": 30, "balance": 53_000.0}
    assert simulate_sequence(hundred, dataclasses.replace(RULES, max_days=29))["outcome"] == "expired"


def _replay_bar_by_bar(paths, order, rules):
    """The rules followed literally: every bar's equity against the carried peak's threshold."""
    start = rules.starting_balance
    balance = peak = start
    best = -math.inf
    for day, s in enumerate(order[:rules.max_days], start=1):
        for x in paths[s]:
            equity = balance + x
            peak = max(peak, equity)
            if equity <= min(peak - rules.trailing_drawdown, rules.lock_level):
                return BREACH, day, balance
        balance += paths[s][-1]
        best = max(best, paths[s][-1])
        profit = balance - start
        if profit >= rules.profit_target and (rules.consistency_fraction is None
                                              or best <= rules.consistency_fraction * profit):
            return PASS, day, balance
    return EXPIRED, rules.max_days, balance


@given(st.integers(0, 2**32 - 1), st.sampled_from([None, 0.3, 0.5]), st.integers(1, 12))
def test_the_fast_replay_is_the_bar_by_bar_replay(seed, consistency, max_days):
    # Paths on a $50 grid, so that bars land exactly on the threshold and the lock level.
    rng = np.random.default_rng(seed)
    paths = [np.cumsum(rng.choice([-300, -100, -50, 0, 50, 100, 300], size=rng.integers(1, 40))
                       + rng.integers(-40, 60)).astype(float) for _ in range(9)]
    rules = dataclasses.replace(RULES, consistency_fraction=consistency, max_days=max_days)
    order = rng.integers(len(paths), size=(60, max_days))
    fast = simulate_attempts(session_paths(paths, rules.trailing_drawdown), order, rules)
    expected = [_replay_bar_by_bar(paths, row, rules) for row in order]
    assert list(zip(fast.outcome.tolist(), fast.days.tolist(), fast.balance.tolist())) == expected


def test_identical_sessions_give_certain_outcomes():
    def figures(path):
        return estimate_apex(session_paths([path] * 20, RULES.trailing_drawdown), RULES, QUICK)

    passing = figures([300.0, 1_100.0])  # every attempt: three days of +1,100, a pass on day 3
    assert (passing["pass_probability"], passing["pass_probability_low"], passing["pass_probability_high"]) == (1, 1, 1)
    assert passing["breach_probability"] == 0 and passing["expiry_probability"] == 0
    assert (passing["median_days_to_pass"], passing["median_days_to_pass_low"],
            passing["median_days_to_pass_high"]) == (3, 3, 3)
    breaching = figures([-2_600.0, 500.0])
    assert breaching["breach_probability"] == 1 and breaching["breach_probability_high"] == 1
    assert breaching["pass_probability"] == 0 and math.isnan(breaching["median_days_to_pass"])
    flat = figures([0.0])
    assert flat["expiry_probability"] == 1 and flat["pass_probability_high"] == 0


def test_the_interval_comes_from_resampled_sessions():
    # Half the sessions +1,100 days, half -2,600 dips: an attempt passes when its first three sessions
    # are good, breaches at its first bad one; so the chance is strictly between 0 and 1, and
    # resamples of the 18 sessions (with more or fewer good runs) spread around it.
    good, bad = [300.0, 1_100.0], [-2_600.0, 500.0]
    sessions = session_paths([good, good, good, bad, bad, bad] * 3, RULES.trailing_drawdown)
    figures = estimate_apex(sessions, RULES, QUICK)
    assert 0 < figures["pass_probability_low"] < figures["pass_probability"] < figures["pass_probability_high"] < 1
    assert figures["pass_probability"] + figures["breach_probability"] + figures["expiry_probability"] == 1
    assert figures["median_days_to_pass"] == 3  # a pass can only come on day 3
    no_interval = estimate_apex(sessions, RULES, dataclasses.replace(QUICK, outer_resamples=0))
    assert no_interval["pass_probability"] == figures["pass_probability"]  # its own draws
    assert math.isnan(no_interval["pass_probability_low"]) and math.isnan(no_interval["pass_probability_high"])
    assert estimate_apex(sessions, RULES, QUICK) == figures  # seeded


def test_median_days_per_resample_equal_numpy_medians():
    from hybrid_trader.evaluation.apex import _medians_of_days

    rng = np.random.default_rng(5)
    groups = rng.integers(0, 6, size=301)
    groups = groups[groups != 4]  # group 4 has no pass: NaN
    days = rng.integers(1, 31, size=len(groups))
    medians = _medians_of_days(days, groups, 6, 30)
    expected = [np.median(days[groups == g]) if (groups == g).any() else np.nan for g in range(6)]
    np.testing.assert_array_equal(medians, expected)
    assert _medians_of_days(np.array([3, 4]), np.array([0, 0]), 1, 30).tolist() == [3.5]  # an even count


def test_block_walks_move_to_the_next_session_inside_a_block():
    rng = np.random.default_rng(0)
    circular = block_bootstrap_indices(rng, 10, 200, 9, 3, "circular")
    steps = (np.diff(circular, axis=1) % 10 == 1)
    assert steps[:, [0, 1, 3, 4, 6, 7]].all()  # within blocks of 3: the next session, wrapping at 10
    assert not steps[:, [2, 5]].all()  # a new block starts anywhere
    stationary = block_bootstrap_indices(rng, 10, 4000, 20, 5.0)
    jumps = np.diff(stationary, axis=1) % 10 != 1
    # A new block at each step with probability 1/5 (a jump lands on the next session 1 time in 10).
    assert jumps.mean() == pytest.approx(0.2 * 0.9, abs=0.01)
    assert (np.diff(block_bootstrap_indices(rng, 10, 50, 20, 1e9), axis=1) % 10 == 1).all()


def test_sessions_from_a_backtest_frame():
    episodes = pd.DataFrame({"session_date": ["2024-01-03", "2024-01-02"], "net_pnl": [-300.0, 800.0]})
    steps = pd.DataFrame({"session_date": ["2024-01-02"] * 3 + ["2024-01-03"] * 3, "step": [2, 1, 3, 1, 2, 3],
                          "equity": [47_400.0, 51_000.0, 50_800.0, 49_900.0, 50_100.0, 49_700.0]})
    sessions = sessions_from_backtest(episodes, steps, RULES)
    assert sessions.dates.tolist() == ["2024-01-02", "2024-01-03"]  # date order
    # 01-02 in step order: +1,000, -2,600, +800: low -2,600; the fall from +1,000 is 3,600 >= 2,500.
    assert sessions.low.tolist() == [-2_600.0, -300.0] and sessions.high.tolist() == [1_000.0, 100.0]
    assert sessions.deep_low.tolist() == [-2_600.0, math.inf] and sessions.close.tolist() == [800.0, -300.0]
    with pytest.raises(ValueError, match="steps' sessions"):
        sessions_from_backtest(episodes, steps[steps["session_date"] == "2024-01-02"], RULES)
    figures = apex_figures(episodes, steps, RULES, QUICK)
    assert figures["sessions"] == 2 and 0 < figures["breach_probability"] <= 1


def test_settings_from_the_parameters():
    import yaml

    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())
    engine = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters.yml").read_text())["environment"]["engine"]
    rules, estimation = apex_settings(params["evaluation"]["apex_evaluation"], engine)
    assert rules == ApexRules(50_000.0, 2_500.0, 100.0, 3_000.0, None, 30)
    assert estimation.block_length == 5 and estimation.bootstrap == "stationary"
    with pytest.raises(ValueError, match="unknown apex_evaluation settings"):
        apex_settings({"profit_goal": 3_000}, engine)


@pytest.mark.parametrize("changes, message", [
    ({"profit_target": -1.0}, "profit_target must be > 0"),
    ({"trailing_drawdown": 0.0}, "trailing_drawdown must be > 0"),
    ({"profit_target": float("nan")}, "finite number"),
    ({"threshold_lock_offset": -5.0}, "threshold_lock_offset must be >= 0"),
    ({"threshold_lock_offset": 3_000.0}, "below profit_target"),
    ({"consistency_fraction": 0.0}, "consistency_fraction"),
    ({"consistency_fraction": 1.5}, "consistency_fraction"),
    ({"max_days": 0}, "max_days"),
    ({"max_days": 2.5}, "max_days"),
])
def test_rules_reject_nonsense(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(RULES, **changes)


@pytest.mark.parametrize("changes, message", [
    ({"attempts": 0}, "attempts"),
    ({"outer_resamples": -1}, "outer_resamples"),
    ({"block_length": 0.5}, "block_length must be >= 1"),
    ({"bootstrap": "moving"}, "bootstrap must be one of"),
    ({"bootstrap": "circular", "block_length": 2.5}, "whole number"),
    ({"confidence": 1.0}, "confidence"),
])
def test_estimation_rejects_nonsense(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ApexEstimation(), **changes)
