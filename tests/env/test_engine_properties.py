"""Invariants of the engine over random action sequences (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.env.engine import END_REASONS, EngineConfig, TradingEngine

ACTIONS = st.lists(st.integers(min_value=0, max_value=N_ACTIONS - 1), min_size=1, max_size=700)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _config(mode: str, exit_action: bool = True) -> EngineConfig:
    return EngineConfig(episode_mode=mode, max_episode_steps=120, stop_atr_multiple=3.0, exit_action=exit_action)


@SETTINGS
@given(actions=ACTIONS, seed=st.integers(0, 10_000), mode=st.sampled_from(["random_start", "full_session"]),
       exit_action=st.booleans())
def test_accounting_and_rule_invariants(synthetic_market, actions, seed, mode, exit_action):
    market = synthetic_market
    engine = TradingEngine(market, _config(mode, exit_action), n_envs=1, seed=seed)
    engine.reset()
    commission = market.contract.commission_per_side
    point_value = market.contract.multiplier
    start = engine.config.starting_balance
    last_floor = engine.floor[0]
    for action in actions:
        masks = engine.action_masks()[0]
        flat = engine.side[0] == 0
        assert masks[Action.HOLD]
        assert masks[Action.BUY] == masks[Action.SELL] == (flat and market.entry_allowed[engine.t[0]])
        if flat:
            assert not masks[3:].any()
        else:
            assert masks[Action.ENABLE_TRAILING_STOP] != masks[Action.DISABLE_TRAILING_STOP]
            assert masks[Action.EXIT] == exit_action
        exits_before = engine.exit_counts[0].sum()

        result = engine.step(np.array([action]))
        t, side = engine.t[0], engine.side[0]
        marked = side * point_value * (market.close[t] - engine.entry[0]) if side else 0.0
        assert engine.equity[0] == engine.cash[0] + marked  # equity = cash + marked position
        assert engine.commission_paid[0] == engine.fills[0] * commission  # once per fill
        assert engine.fills[0] == 2 * engine.closed_trades[0] + (side != 0)
        lock = start + engine.config.threshold_lock_offset
        assert engine.floor[0] >= last_floor and engine.floor[0] <= lock  # trails up, then locks
        last_floor = engine.floor[0]
        if result.invalid_action[0]:
            assert not masks[action]
        elif action == Action.EXIT:  # a valid EXIT always closes the position (however it is counted)
            assert side == 0 and engine.exit_counts[0].sum() == exits_before + 1
        if result.terminated[0] or result.truncated[0]:
            reason = END_REASONS[result.end_reason[0]]
            if reason == "session_end":
                assert side == 0 and t == market.session_last[t]  # flat at every session end
            if reason == "drawdown_breach":
                assert side == 0 and engine.equity[0] <= engine.floor[0]
            engine.reset(np.array([0]))
            last_floor = engine.floor[0]
        else:
            assert t < market.session_last[t] or side == 0


@SETTINGS
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["random_start", "full_session"]))
def test_vectorised_engine_equals_independent_single_engines(synthetic_market, seed, mode):
    n, steps = 4, 400
    rng = np.random.default_rng(seed)
    config = _config(mode)
    vec = TradingEngine(synthetic_market, config, n_envs=n, seed=seed)
    singles = [TradingEngine(synthetic_market, config, n_envs=1, seed=seed) for _ in range(n)]
    starts = vec.sample_starts(n * 20)
    next_start = n
    vec.reset(starts=starts[:n])
    for i, single in enumerate(singles):
        single.reset(starts=starts[i:i + 1])
    fields = ("t", "side", "entry", "stop", "target", "cash", "equity", "peak", "floor", "trailing",
              "at_breakeven", "mae", "mfe", "realized_today", "fills", "trades_today")
    for _ in range(steps):
        actions = rng.integers(0, N_ACTIONS, n)
        result = vec.step(actions)
        for i, single in enumerate(singles):
            one = single.step(actions[i:i + 1])
            assert one.reward[0] == result.reward[i]
            assert one.end_reason[0] == result.end_reason[i]
            for name in fields:
                assert getattr(single, name)[0] == getattr(vec, name)[i], name
            assert single.exit_counts[0].tolist() == vec.exit_counts[i].tolist()
        done = np.flatnonzero(result.terminated | result.truncated)
        if len(done):
            new = starts[next_start: next_start + len(done)]
            next_start += len(done)
            vec.reset(done, new)
            for k, i in enumerate(done):
                singles[i].reset(starts=new[k:k + 1])
