"""The sample-efficiency benchmark: variant means and the paired variant - RL-only differences with
their 95% t-intervals (one hybrid or several) against hand-computed values; the flat share rebuilt
from a backtest trace, checked by hand and against the engine's position; the figures, the
command line and a run without an oracle (training replaced by a fake)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import benchmarks.bench_advice_sample_efficiency as bench
from benchmarks.bench_advice_sample_efficiency import markdown_table, paired_statistics
from hybrid_trader.agents.backtest import run_backtest
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv


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


T_975_1DOF = 12.706205  # t(0.975, 1 degree of freedom)


def _full(seed, variant, pnl, flat, capture=0.1, trades=2.0, breach=0.0, steps=10):
    return {"seed": seed, "variant": variant, "steps": steps, "env_steps": steps, "oracle_capture": capture,
            "direction_agreement": 0.5, "mean_daily_pnl": pnl, "flat_share": flat,
            "trades_per_session": trades, "breach_share": breach}


def test_every_hybrid_is_paired_with_rl_only():
    runs = [_full(1, "rl_only", 100.0, 0.5, capture=0.1), _full(2, "rl_only", 300.0, 0.7, capture=0.3),
            _full(1, "hybrid:fixed", 150.0, 0.4, capture=0.2), _full(2, "hybrid:fixed", 330.0, 0.6, capture=0.2),
            _full(2, "hybrid:confidence", 250.0, 0.9, breach=0.5), _full(1, "hybrid:confidence", 90.0, 0.8),
            _full(3, "hybrid:confidence", 400.0, 1.0)]  # no rl_only run of seed 3
    [row] = bench.paired_statistics(runs, variants=["hybrid:fixed", "hybrid:confidence", "rl_only"])
    assert row["variants"] == ["hybrid:fixed", "hybrid:confidence", "rl_only"]
    assert row["n_seeds"] == {"hybrid:fixed": 2, "hybrid:confidence": 3, "rl_only": 2}
    assert row["rl_only"]["mean_daily_pnl"] == pytest.approx(200.0)
    assert row["hybrid:confidence"]["mean_daily_pnl"] == pytest.approx(740.0 / 3)
    assert row["hybrid:confidence"]["flat_share"] == pytest.approx(0.9)
    assert row["hybrid:confidence"]["breach_share"] == pytest.approx(0.5 / 3)
    assert row["paired_seeds"] == {"hybrid:fixed": [1, 2], "hybrid:confidence": [1, 2]}
    # hybrid:fixed - rl_only: P&L 50, 30 -> mean 40, sd 10 sqrt(2), se 10, half-width 12.706205 x 10.
    fixed = row["differences"]["hybrid:fixed"]["mean_daily_pnl"]
    assert fixed["per_seed"] == {1: 50.0, 2: 30.0}
    assert fixed["mean"] == pytest.approx(40.0) and fixed["se"] == pytest.approx(10.0)
    assert fixed["lower"] == pytest.approx(40.0 - 10 * T_975_1DOF, abs=1e-4)
    assert fixed["upper"] == pytest.approx(40.0 + 10 * T_975_1DOF, abs=1e-4)
    # hybrid:confidence - rl_only: P&L -10, -50 -> mean -30, se 20; flat share 0.3, 0.2 -> 0.25, se 0.05.
    confidence = row["differences"]["hybrid:confidence"]
    assert confidence["mean_daily_pnl"]["mean"] == pytest.approx(-30.0)
    assert confidence["mean_daily_pnl"]["se"] == pytest.approx(20.0)
    assert confidence["flat_share"]["mean"] == pytest.approx(0.25)
    assert confidence["flat_share"]["se"] == pytest.approx(0.05)
    assert confidence["oracle_capture"]["per_seed"] == pytest.approx({1: 0.0, 2: -0.2})
    assert "rl_only" not in row["differences"]
    assert "difference" not in row and "seeds" not in row  # only with a single compared variant
    table = bench.variants_table([row])
    assert ("| 10 | 10 | hybrid:fixed | 2 | 0.200 | 0.500 | 240 | 0.500 | 2.00 | 0.000 | +40 [-87, +167] "
            "| +0.000 [-1.271, +1.271] |") in table
    assert ("| 10 | 10 | hybrid:confidence | 3 | 0.100 | 0.500 | 247 | 0.900 | 2.00 | 0.167 | -30 [-284, +224] "
            "| -0.100 [-1.371, +1.171] |") in table
    assert "| 10 | 10 | rl_only | 2 | 0.200 | 0.500 | 200 | 0.600 | 2.00 | 0.000 | — | — |" in table


def test_without_an_oracle_or_rl_only_the_tables_keep_to_what_was_measured():
    runs = [{k: v for k, v in _full(1, variant, pnl, 0.5).items() if k not in bench.ORACLE_METRICS}
            for variant, pnl in (("hybrid:observation", 10.0), ("hybrid:learned_gate", -20.0))]
    [row] = bench.paired_statistics(runs)  # the default METRICS: the oracle's are absent from the runs
    assert row["variants"] == ["hybrid:observation", "hybrid:learned_gate"]
    assert set(row["hybrid:observation"]) == set(bench.PNL_METRICS)
    assert "differences" not in row
    table = bench.variants_table([row], oracle=False)
    assert table.splitlines()[0] == ("| steps | env steps | variant | seeds | P&L/day ($) | flat share "
                                     "| trades/session | breach share | P&L/day - rl_only [95% CI] |")
    assert "| 10 | 10 | hybrid:learned_gate | 1 | -20 | 0.500 | 2.00 | 0.000 | — |" in table


def _trace():
    # Session A: HOLD, BUY (flat at the decision), held twice (the trade closes in the 4th step), flat.
    # Session B: SELL stopped out in the bar it filled, HOLD, BUY, then held.
    return pd.DataFrame({"session_date": ["2024-01-02"] * 5 + ["2024-01-03"] * 4,
                         "row": np.arange(9), "action": [0, 1, 0, 4, 0, 2, 0, 1, 0],
                         "trade_pnl": [np.nan, np.nan, np.nan, 50.0, np.nan, -30.0, np.nan, np.nan, np.nan]})


def test_flat_decisions_rebuild_the_position_from_entries_and_closed_trades():
    assert bench.flat_decisions(_trace()).tolist() == [True, True, False, False, True, True, True, True, False]
    broken = _trace()
    broken.loc[0, "trade_pnl"] = 5.0  # a trade closed while flat
    with pytest.raises(ValueError, match="alternate"):
        bench.flat_decisions(broken)


def test_flat_decisions_match_the_engine_position_at_each_decision(synthetic_market):
    # A stop of 0.3 ATR is often hit in the bar the entry fills: entries and closes in one step are covered.
    config = EngineConfig(episode_mode="full_session", stop_atr_multiple=0.3)
    env = TradingVecEnv(synthetic_market, config, n_envs=1, phase=2, seed=0)
    rng = np.random.default_rng(3)
    sides = []

    def random_recording(obs, masks):  # one environment: one call per trace row, in order
        sides.append(int(env.engine.side[0]))
        return np.array([rng.choice(np.flatnonzero(masks[0]))])

    episodes, trace = run_backtest(env, random_recording, trace=True)
    flat = bench.flat_decisions(trace)
    assert len(flat) == len(sides) == len(trace)
    assert flat.tolist() == [side == 0 for side in sides]
    assert 0 < flat.mean() < 1 and episodes["trades"].sum() > 3  # both states visited, several trades
    assert (trace["action"].isin([1, 2]) & trace["trade_pnl"].notna()).any()


def test_score_backtest_without_an_oracle_gives_the_pnl_figures_only():
    episodes = pd.DataFrame({"session_date": ["2024-01-02", "2024-01-03"], "net_pnl": [500.0, -250.0],
                             "steps": [5, 4], "end_reason": ["session_end", "drawdown_breach"], "trades": [1, 2]})
    figures = bench.score_backtest(episodes, _trace())
    assert figures == {"sessions": 2, "entries": 3, "mean_daily_pnl": 125.0,
                       "mean_daily_pnl_se": pytest.approx(375.0),  # |500 + 250| / 2 for two sessions
                       "flat_share": pytest.approx(6 / 9), "trades_per_session": 1.5, "breach_share": 0.5}


def test_variants_parse_from_the_command_line():
    args = bench.build_parser().parse_args([])
    assert (args.env, args.variants, args.fusion) == ("planted", None, None)
    assert bench.parse_variants(None, "confidence") == ["hybrid:confidence", "rl_only"]
    args = bench.build_parser().parse_args(["--env", "base", "--variants",
                                            "hybrid:fixed, hybrid:observation,rl_only,hybrid"])
    assert bench.parse_variants(args.variants, "confidence") == [
        "hybrid:fixed", "hybrid:observation", "rl_only", "hybrid:confidence"]
    for bad, message in (("hybrid:mixed", "unknown variant"), ("rl", "unknown variant"),
                         ("rl_only,rl_only", "twice"), (" , ", "no variant")):
        with pytest.raises(ValueError, match=message):
            bench.parse_variants(bad, "fixed")
    assert bench.variant_settings("hybrid:learned_gate", "fixed") == {"fusion": "learned_gate", "use_advisor": True}
    assert bench.variant_settings("rl_only", "observation") == {"fusion": "observation", "use_advisor": False}


def test_no_planted_edge_means_no_oracle():
    assert bench.planted_edge({"evaluation": {"planted_edge": None}}) is None
    assert bench.planted_edge({"evaluation": {"planted_edge": {"kind": "none", "points_per_minute": 1.0}}}) is None
    assert bench.planted_edge({"evaluation": {"planted_edge": {"kind": "time_of_day", "points_per_minute": 1.0,
                                                               "turn": "12:45"}}}).kind == "time_of_day"
    assert bench.oracle_reference({}, {}, None) == (None, None)  # reads no data


def test_main_on_the_default_market_trains_every_variant_and_reports_pnl_only(tmp_path, monkeypatch):
    features = pd.DataFrame({"session_date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
                             "split": ["train", "test", "test"]})
    params = {"evaluation": {"planted_edge": None},
              "phase3": {"fusion": "fixed", "llm_weight": 0.2, "learn_llm_weight": False}}
    loaded, trained = [], []

    class FakeAdvisor:
        def close(self):
            pass

    def fake_train(seed, variant, steps, fusion, data, params, advisor, directions, oracle):
        trained.append((seed, variant, fusion, directions, oracle))
        pnl = {"rl_only": 0.0, "hybrid:fixed": 10.0 * seed, "hybrid:confidence": -5.0}[variant]
        return [{"seed": seed, "variant": variant, "steps": s, "env_steps": s, "mean_daily_pnl": pnl,
                 "flat_share": 1.0, "trades_per_session": 0.0, "breach_share": 0.0, "run_wall_seconds": 1.0}
                for s in steps]

    monkeypatch.setattr(bench, "load_project", lambda project, env: loaded.append(env) or
                        ({"model_input_features": features}, params))
    monkeypatch.setattr(bench, "fill_advice_cache", lambda data, params: (
        FakeAdvisor(), {"distinct_prompts": 0, "scored": 0, "seconds": 0.0, "fine_tuned": True, "cache_entries": 0}))
    monkeypatch.setattr(bench, "train_and_score", fake_train)
    monkeypatch.chdir(tmp_path)  # main changes into the project folder
    bench.main(["--project-dir", str(tmp_path), "--env", "base", "--seeds", "1", "2", "--steps", "20,10",
                "--variants", "hybrid:fixed,hybrid:confidence,rl_only", "--out", str(tmp_path / "out")])
    assert loaded == ["base"]
    assert [(s, v, f) for s, v, f, _, _ in trained] == [
        (1, "hybrid:fixed", "fixed"), (1, "hybrid:confidence", "fixed"), (1, "rl_only", "fixed"),
        (2, "hybrid:fixed", "fixed"), (2, "hybrid:confidence", "fixed"), (2, "rl_only", "fixed")]
    assert all(d is None and o is None for _, _, _, d, o in trained)
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["planted_edge"] is None and report["oracle"] is None and report["test_sessions"] == 2
    assert report["metrics"] == list(bench.PNL_METRICS)
    first = report["summary"][0]
    assert first["steps"] == 10 and first["differences"]["hybrid:fixed"]["mean_daily_pnl"]["mean"] == 15.0
    markdown = (tmp_path / "out.md").read_text()
    assert "capture" not in markdown and "| 20 | 20 | hybrid:confidence | 2 | -5 |" in markdown


def test_main_refuses_an_unknown_variant_before_loading_the_project(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "load_project", lambda *a: pytest.fail("the project was loaded"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        bench.main(["--project-dir", str(tmp_path), "--variants", "hybrid:average,rl_only"])
