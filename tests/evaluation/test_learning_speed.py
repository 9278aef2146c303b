"""The learning curve's schedule and clock, and the first crossing."""

import math
import time

import torch
from sb3_contrib import MaskablePPO

from hybrid_trader.agents.backtest import run_backtest, sb3_policy
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.evaluation.learning_speed import CurvePoint, LearningCurve, first_reaching


def _model(market, seed: int = 1) -> MaskablePPO:
    # Rollouts of 2 envs x 16 steps = 32 steps.
    env = TradingVecEnv(market, EngineConfig(), n_envs=2, phase=2, seed=0)
    return MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=seed,
                       policy_kwargs={"net_arch": [16]}, device="cpu")


def _scripted(scores):
    calls = []

    def evaluate(model):
        calls.append(model.num_timesteps)
        return scores[len(calls) - 1]

    return evaluate, calls


def test_first_reaching():
    points = [CurvePoint(8, 1.0, 0.2), CurvePoint(16, 2.0, math.nan), CurvePoint(24, 3.0, 0.5),
              CurvePoint(32, 4.0, 0.9)]
    assert first_reaching(points, 0.5) == points[2]
    assert first_reaching(points, 0.95) is None
    assert first_reaching([], 0.5) is None


def test_evaluates_at_the_rollout_starts_after_each_multiple_and_at_the_end(synthetic_market):
    # Rollouts start at 0, 32, ..., 224; every 48 steps: the first starts at or after 48, 96, 144, 192
    # are 64, 96, 160, 192; training ends at 256.
    evaluate, calls = _scripted([0.1, 0.2, 0.3, 0.4, 0.45])
    curve = LearningCurve(evaluate, every=48, threshold=0.5)
    _model(synthetic_market).learn(256, callback=curve)
    assert calls == [64, 96, 160, 192, 256]
    assert [p.steps for p in curve.points] == calls
    assert [p.score for p in curve.points] == [0.1, 0.2, 0.3, 0.4, 0.45]
    assert first_reaching(curve.points, 0.5) is None


def test_after_reaching_the_threshold_only_the_end_is_evaluated(synthetic_market):
    evaluate, calls = _scripted([0.1, 0.6, 0.3])
    curve = LearningCurve(evaluate, every=48, threshold=0.5)
    _model(synthetic_market).learn(256, callback=curve)
    assert calls == [64, 96, 256]
    assert first_reaching(curve.points, 0.5).steps == 96


def test_train_seconds_leave_out_the_evaluations(synthetic_market):
    def slow(model):
        time.sleep(0.3)
        return 0.0

    curve = LearningCurve(slow, every=64)
    model = _model(synthetic_market)
    start = time.perf_counter()
    model.learn(128, callback=curve)
    wall = time.perf_counter() - start
    assert [p.steps for p in curve.points] == [64, 128]
    first, last = curve.points
    assert 0 < first.train_seconds < last.train_seconds
    # The first evaluation's 0.3 s is not training time, nor is the last one's (it starts after).
    assert last.train_seconds <= wall - 0.6


def test_evaluating_leaves_training_unchanged(synthetic_market):
    evaluation = TradingVecEnv(synthetic_market, EngineConfig(episode_mode="full_session"), n_envs=3, phase=2)

    def backtest(model):
        return float(run_backtest(evaluation, sb3_policy(model))["net_pnl"].sum())

    # Each model is built just before it trains: building one seeds the global generators.
    plain = _model(synthetic_market)
    plain.learn(128)
    watched, curve = _model(synthetic_market), LearningCurve(backtest, every=32)
    watched.learn(128, callback=curve)
    assert len(curve.points) == 4
    for a, b in zip(plain.policy.state_dict().values(), watched.policy.state_dict().values()):
        assert torch.equal(a, b)

