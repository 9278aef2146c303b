"""Advisor skill figures, reference advisors and the report, checked against hand-computed values."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.env.actions import Action
from hybrid_trader.evaluation.advisor_skill import (
    SKILL_ACTIONS,
    LogisticBaseline,
    always_buy,
    render_skill_markdown,
    skill_figures,
    skill_report,
)

HOLD, BUY, SELL = 0, 1, 2
NAN = math.nan

# Columns HOLD, BUY, SELL. lean = P(BUY) - P(SELL).
PROBS = np.array([
    [0.2, 0.6, 0.2],  # BUY label,  lean +0.4 right, top BUY
    [0.1, 0.3, 0.6],  # SELL label, lean -0.3 right, top SELL
    [0.5, 0.3, 0.2],  # SELL label, lean +0.1 wrong, top HOLD
    [0.6, 0.2, 0.2],  # HOLD label, not a direction row, top HOLD
    [0.4, 0.3, 0.3],  # BUY label,  lean 0 counts as wrong, top HOLD
    [NAN, NAN, NAN],  # no advice: left out
])
LABELS = np.array([BUY, SELL, SELL, HOLD, BUY, BUY])
FORWARD = np.array([4.0, -3.0, -2.0, 0.5, 1.0, 10.0])
SESSIONS = np.array(["A", "A", "B", "B", "B", "C"])
COST, POINT_VALUE = 0.5, 5.0


def _figures(probs=PROBS, labels=LABELS, forward=FORWARD, sessions=SESSIONS, **kwargs):
    return skill_figures(probs, labels, forward, COST, sessions, point_value=POINT_VALUE, **kwargs)


def test_skill_actions_follow_the_action_ids():
    assert SKILL_ACTIONS == (int(Action.HOLD), int(Action.BUY), int(Action.SELL))


def test_hand_computed_figures_leave_out_rows_without_advice():
    f = _figures()
    assert f["bars"] == 5 and f["coverage"] == pytest.approx(5 / 6)
    # Direction rows 0, 1, 2, 4: right, right, wrong, wrong (lean 0).
    assert f["direction_bars"] == 4 and f["direction_accuracy"] == pytest.approx(0.5)
    # -log P(label): 0.6, 0.6, 0.2, 0.6, 0.3.
    assert f["log_loss"] == pytest.approx((3 * -math.log(0.6) - math.log(0.2) - math.log(0.3)) / 5)
    # Squared errors per row: .04+.16+.04, .01+.09+.16, .25+.09+.64, .16+.04+.04, .16+.49+.09.
    assert f["brier"] == pytest.approx((0.24 + 0.26 + 0.98 + 0.24 + 0.74) / 5)
    # lean (.4, -.3, .1, 0, 0) mean .04; forward (4, -3, -2, .5, 1) mean .1:
    # sum of cross deviations 2.28, squares .252 and 30.2.
    assert f["lean_correlation"] == pytest.approx(2.28 / math.sqrt(0.252 * 30.2))
    assert (f["top_buy_share"], f["top_hold_share"], f["top_sell_share"]) == pytest.approx((0.2, 0.6, 0.2))
    # Follow: long row 0 (4 - 0.5), short row 1 (3 - 0.5), nothing on the three HOLD rows.
    assert f["follow_net_points"] == pytest.approx((3.5 + 2.5) / 5)
    assert f["follow_net_dollars"] == pytest.approx(1.2 * POINT_VALUE)
    assert f["follow_trades"] == pytest.approx(0.4)


def test_session_bootstrap_resamples_whole_sessions():
    # Direction rows: session A 2/2 right, B 0/2 right. Two sessions drawn with replacement:
    # AA -> 1 (1/4), AB or BA -> 0.5 (1/2), BB -> 0 (1/4): std sqrt(1/8), 5th percentile 0.
    f = _figures(bootstrap_draws=4000, seed=3)
    assert f["direction_accuracy_se"] == pytest.approx(math.sqrt(1 / 8), abs=0.015)
    assert f["direction_accuracy_lower95"] == 0.0
    assert _figures(bootstrap_draws=500, seed=3) == _figures(bootstrap_draws=500, seed=3)
    # One session: every draw is the data itself.
    one = _figures(sessions=np.array(["A"] * 6), bootstrap_draws=50)
    assert one["direction_accuracy_se"] == 0.0 and one["direction_accuracy_lower95"] == pytest.approx(0.5)
    # Datetime sessions work as well as strings.
    dates = np.array(["2024-01-02", "2024-01-02", "2024-01-03", "2024-01-03", "2024-01-03", "2024-01-04"],
                     dtype="datetime64[D]")
    assert _figures(sessions=dates, bootstrap_draws=100) == _figures(bootstrap_draws=100)


def test_undefined_figures_are_nan():
    # Only HOLD labels and constant lean: no direction figure, no correlation.
    f = skill_figures(always_buy(3), np.array([HOLD] * 3), np.array([1.0, 2.0, 3.0]), COST,
                      np.array(["A"] * 3), point_value=POINT_VALUE, bootstrap_draws=10)
    assert f["direction_bars"] == 0
    for key in ("direction_accuracy", "direction_accuracy_se", "direction_accuracy_lower95",
                "lean_correlation"):
        assert math.isnan(f[key])
    # -log(max(0, 1e-12)) on every row.
    assert f["log_loss"] == pytest.approx(-math.log(1e-12))
    # No advice at all: nothing but bars and coverage is defined.
    none = _figures(probs=np.full((6, 3), NAN))
    assert none["bars"] == 0 and none["coverage"] == 0.0
    assert all(math.isnan(v) for k, v in none.items() if k not in ("bars", "coverage", "direction_bars"))


def test_malformed_inputs_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        _figures(probs=PROBS * 2)
    with pytest.raises(ValueError, match="labels"):
        _figures(labels=np.array([0, 1, 2, 3, 1, 1]))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        _figures(probs=PROBS[:, :2])


def test_always_buy():
    probs = always_buy(6)
    assert probs.shape == (6, 3) and (probs == [0.0, 1.0, 0.0]).all()
    f = _figures(probs=probs)
    # Right on the BUY labels only: rows 0, 4, 5 of the 5 direction rows.
    assert f["direction_accuracy"] == pytest.approx(3 / 5) and f["coverage"] == 1.0
    # Long every row: (4 - 3 - 2 + 0.5 + 1 + 10) - 6 * 0.5 = 7.5 over 6 rows.
    assert f["follow_net_points"] == pytest.approx(7.5 / 6) and f["follow_trades"] == 1.0


def test_logistic_baseline_learns_a_separable_rule_without_hold():
    x = np.linspace(0.0, 1.0, 40)
    train = pd.DataFrame({"x": x})
    model = LogisticBaseline.fit(train, np.where(x < 0.5, BUY, SELL))
    proba = model.predict_proba(pd.DataFrame({"x": [0.05, 0.3, 0.7, 0.95]}))
    assert proba.shape == (4, 3)
    assert (proba[:, HOLD] == 0.0).all()
    assert proba.sum(axis=1) == pytest.approx(np.ones(4))
    assert list(proba.argmax(axis=1)) == [BUY, BUY, SELL, SELL]


def test_logistic_baseline_one_hot_encodes_categories():
    train = pd.DataFrame({"regime": ["up", "down", "flat"] * 10, "noise": np.tile([0.1, 0.2, 0.3, 0.4, 0.5], 6)})
    model = LogisticBaseline.fit(train, np.array([BUY, SELL, HOLD] * 10))
    # Only some categories at prediction, one never seen: columns still line up.
    new = pd.DataFrame({"noise": [0.3, 0.3, 0.3], "regime": ["down", "up", "sideways"]})
    proba = model.predict_proba(new)
    assert list(proba[:2].argmax(axis=1)) == [SELL, BUY]
    assert proba.sum(axis=1) == pytest.approx(np.ones(3))
    # An unseen category is all zeros, the same as a row with no known category.
    assert proba[2] == pytest.approx(model.predict_proba(new.assign(regime=[None] * 3))[2])


def test_logistic_baseline_edge_cases():
    with pytest.raises(ValueError, match="empty training data"):
        LogisticBaseline.fit(pd.DataFrame({"x": []}), np.array([], dtype=int))
    single = LogisticBaseline.fit(pd.DataFrame({"x": [0.0, 1.0]}), np.array([SELL, SELL]))
    assert (single.predict_proba(pd.DataFrame({"x": [3.0]})) == [[0.0, 0.0, 1.0]]).all()
    with pytest.raises(ValueError, match="fitted columns"):
        single.predict_proba(pd.DataFrame({"y": [3.0]}))


def _rows():
    validation = pd.DataFrame({"label": LABELS, "forward_points": FORWARD, "session_date": SESSIONS})
    test = pd.DataFrame({"label": [BUY, SELL], "forward_points": [2.0, 1.0], "session_date": ["D", "D"]})
    return {"validation": validation, "test": test}


def test_skill_report_shape_and_mismatch():
    rows = _rows()
    advisors = {"llm": {"validation": PROBS, "test": np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])},
                "always_buy": {split: always_buy(len(frame)) for split, frame in rows.items()}}
    report = skill_report(advisors, rows, cost_points=COST, point_value=POINT_VALUE, horizon_bars=12,
                          label_rule="triple barrier", market="MES", bootstrap_draws=100)
    assert (report["market"], report["horizon_bars"], report["label_rule"], report["cost_points"]) == (
        "MES", 12, "triple barrier", 0.5)
    validation = report["splits"]["validation"]
    assert validation["bars"] == 6 and validation["sessions"] == 3
    assert validation["label_shares"] == pytest.approx({"HOLD": 1 / 6, "BUY": 3 / 6, "SELL": 2 / 6})
    assert validation["advisors"]["llm"] == _figures(bootstrap_draws=100)
    assert report["splits"]["test"]["advisors"]["llm"]["direction_accuracy"] == 1.0
    assert report["splits"]["test"]["advisors"]["always_buy"]["direction_accuracy"] == 0.5
    json.dumps(report)  # plain types only

    advisors["llm"]["test"] = always_buy(3)
    with pytest.raises(ValueError, match="'llm'.*'test'"):
        skill_report(advisors, rows, cost_points=COST, point_value=POINT_VALUE, horizon_bars=12,
                     label_rule="triple barrier", market="MES", bootstrap_draws=10)


def test_markdown_report():
    rows = _rows()
    advisors = {"llm": {"validation": PROBS, "test": np.full((2, 3), NAN)},
                "logistic": {split: always_buy(len(frame)) for split, frame in rows.items()}}
    text = render_skill_markdown(skill_report(advisors, rows, cost_points=COST, point_value=POINT_VALUE,
                                              horizon_bars=12, label_rule="triple barrier", market="MES",
                                              bootstrap_draws=10))
    assert text.startswith("# Advisor skill")
    assert "triple barrier" in text and "12 bars" in text and "MES" in text
    assert "## Validation" in text and "## Test" in text and "## Definitions" in text
    lines = text.splitlines()
    llm_validation = next(line for line in lines if line.startswith("| llm |"))
    # Brier 0.492, log loss 0.869, follow 1.2 points * $5 = $6, coverage 5/6.
    for cell in ("| 0.492 |", "| 0.869 |", "| 6 |", "| 0.833 |", "0.5 ±"):
        assert cell in llm_validation
    # The LLM gave no advice on the test split: its figures there are n/a.
    llm_test = [line for line in lines if line.startswith("| llm |")][1]
    assert "n/a" in llm_test and llm_test.endswith("| 0 |")
    assert sum(line.startswith("| logistic |") for line in lines) == 2
    for term in ("direction accuracy", "log loss", "Brier", "lean corr.", "follow net $/decision", "coverage"):
        assert f"**{term}**" in text
