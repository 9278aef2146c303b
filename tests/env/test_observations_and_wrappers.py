import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import EngineConfig, TradingEngine
from hybrid_trader.env.observation import ObservationBuilder
from hybrid_trader.env.vec_env import TradingEnv, TradingVecEnv
from hybrid_trader.features.registry import OBSERVATION_NAMES, WINDOW_FEATURES


def test_phase2_view_is_the_first_228_columns_of_the_phase3_view(synthetic_market):
    engine = TradingEngine(synthetic_market, EngineConfig(), n_envs=8, seed=3)
    engine.reset()
    rng = np.random.default_rng(0)
    for _ in range(50):
        masks = engine.action_masks()
        engine.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
        done = np.flatnonzero(engine.t == synthetic_market.session_last[engine.t])
        engine.reset(done)
        phase2, phase3 = ObservationBuilder(2).build(engine), ObservationBuilder(3).build(engine)
        assert phase2.shape == (8, 228) and phase3.shape == (8, 261)
        assert phase2.dtype == phase3.dtype == np.float32
        np.testing.assert_array_equal(phase2, phase3[:, :228])
        assert np.isfinite(phase3).all()


def test_window_columns_read_the_right_bars(synthetic_frames, synthetic_market):
    _, features = synthetic_frames
    engine = TradingEngine(synthetic_market, EngineConfig(), n_envs=1, seed=0)
    engine.reset()
    t = engine.t[0]
    obs = ObservationBuilder(3).build(engine)[0]
    column = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
    assert obs[column["rsi14_t0"]] == np.float32(features["rsi14"].iloc[t])
    assert obs[column["rsi14_t-19"]] == np.float32(features["rsi14"].iloc[t - 19])
    assert obs[column["session_vol_ratio_t-3"]] == np.float32(features["session_vol_ratio"].iloc[t - 3])
    assert obs[column["session_move_atr_t0"]] == np.float32(features["session_move_atr"].iloc[t])
    assert obs[column["adx14"]] == np.float32(features["adx14"].iloc[t])
    assert obs[column["minutes_to_flat"]] == np.float32(features["minutes_to_flat"].iloc[t])
    assert obs[column["session_efficiency"]] == np.float32(features["session_efficiency"].iloc[t])
    assert obs[column["position_side"]] == 0 and obs[column["drawdown_buffer"]] == 1.0
    assert len(WINDOW_FEATURES) * 20 == 220


def test_phase2_sees_the_drawdown_buffer_from_the_engine(synthetic_market):
    """State column 227 is (equity - trailing floor) / limit, read from the engine mid-trade."""
    engine = TradingEngine(synthetic_market, EngineConfig(), n_envs=1, seed=5)
    engine.reset()
    while not engine.action_masks()[0, Action.BUY]:
        engine.step(np.array([Action.HOLD]))
    engine.step(np.array([Action.BUY]))
    for _ in range(5):
        engine.step(np.array([Action.HOLD]))
    assert engine.side[0] == 1 and engine.equity[0] != 50_000.0
    engine.floor[0] -= 123.0  # a floor that is not the fresh account's: the column reads the engine's
    obs = ObservationBuilder(2).build(engine)[0]
    assert OBSERVATION_NAMES[227] == "drawdown_buffer"
    expected = (engine.equity[0] - engine.floor[0]) / 2_500.0
    assert expected != 1.0 and obs[227] == np.float32(expected)


def test_position_and_account_columns(synthetic_market):
    engine = TradingEngine(synthetic_market, EngineConfig(), n_envs=1, seed=5)
    engine.reset()
    while not engine.action_masks()[0, Action.BUY]:
        engine.step(np.array([Action.HOLD]))
    engine.step(np.array([Action.BUY]))
    obs = ObservationBuilder(3).build(engine)[0]
    column = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
    t = engine.t[0]
    atr = synthetic_market.atr[t]
    assert obs[column["position_side"]] == 1.0
    assert obs[column["unrealized_atr"]] == pytest.approx((synthetic_market.close[t] - engine.entry[0]) / atr, rel=1e-5)
    assert obs[column["stop_distance_atr"]] > 0 and obs[column["target_distance_atr"]] > 0
    assert obs[column["trades_today"]] == pytest.approx(0.1)
    assert obs[column["equity_change_today"]] == pytest.approx((engine.equity[0] - 50_000) / 2_500, rel=1e-5)


@pytest.mark.parametrize("phase", [2, 3])
def test_single_env_passes_gymnasium_and_sb3_checkers(synthetic_market, phase):
    env = TradingEnv(synthetic_market, EngineConfig(), phase=phase)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box / no spec notices
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (228 if phase == 2 else 261,)
    assert env.action_masks().shape == (7,) and env.action_space.n == 7


def test_vec_env_auto_resets_and_reports_episode_ends(synthetic_market):
    env = TradingVecEnv(synthetic_market, EngineConfig(max_episode_steps=30), n_envs=4, phase=2, seed=0)
    obs = env.reset()
    assert obs.shape == (4, 228)
    assert np.stack(env.env_method("action_masks")).shape == (4, 7)
    assert env.has_attr("action_masks")
    finished = []
    for _ in range(200):
        masks = env.action_masks()
        actions = np.array([np.flatnonzero(m)[-1] for m in masks])
        obs, rewards, dones, infos = env.step(actions)
        for done, info in zip(dones, infos):
            if done:
                finished.append(info)
                assert info["terminal_observation"].shape == (228,)
    assert finished and sum(env.end_reason_counts.values()) == len(finished)
    assert {info["end_reason"] for info in finished} <= {"max_steps", "drawdown_breach", "session_end"}
    assert all(info["episode"]["l"] <= 30 for info in finished)


def test_maskable_ppo_trains_on_the_vec_env_and_never_picks_a_masked_action(synthetic_market):
    import torch
    from sb3_contrib import MaskablePPO

    torch.set_num_threads(1)
    env = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=2, seed=0)
    model = MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0,
                        policy_kwargs={"net_arch": [32]}, verbose=0)
    model.learn(total_timesteps=64)
    obs = env.reset()
    for _ in range(50):
        masks = env.action_masks()
        actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
        assert masks[np.arange(2), actions].all()
        obs, *_ = env.step(actions)
