"""Phase 2 training mechanics: schedule, telemetry, checkpoints, resume, registry."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from hybrid_trader.agents.backtest import flat_policy, random_policy, run_backtest, summarize
from hybrid_trader.agents.callbacks import latest_checkpoint
from hybrid_trader.agents.phase2 import PPOConfig, linear_schedule, train_phase2
from hybrid_trader.agents.registry import MASK_COLUMNS, load_registered_policy, register_policy
from hybrid_trader.agents.serving import TradingRules, client_input_example
from hybrid_trader.datasets import SB3ModelDataset
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.features.registry import OBSERVATION_NAMES
from hybrid_trader.markets import CONTRACTS


def test_linear_schedule_reads_progress_remaining_the_right_way_round():
    rate = linear_schedule(3e-4, 3e-5)
    assert rate(1.0) == pytest.approx(3e-4)   # SB3 starts at progress_remaining = 1
    assert rate(0.0) == pytest.approx(3e-5)   # ... and ends at 0
    assert rate(0.5) == pytest.approx(1.65e-4)


def test_rejected_ppo_configs():
    with pytest.raises(ValueError, match="batch_size"):
        PPOConfig(n_steps=100, n_envs=3, batch_size=64)
    with pytest.raises(ValueError, match="lr_schedule"):
        PPOConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="shorter than one rollout"):
        PPOConfig(total_timesteps=100)


def test_tiny_run_gives_a_loadable_masked_policy_and_mlflow_histories(tiny_config, envs, tmp_path, tracking):
    import mlflow

    train_env, eval_env = envs
    with mlflow.start_run() as run:
        result = train_phase2(tiny_config, train_env, eval_env, 3, tmp_path / "work", progress_bar=False)
    assert result.model.num_timesteps == 128
    assert result.best_model is not None  # MaskableEvalCallback kept a best-on-validation model
    history = MlflowClient().get_metric_history(run.info.run_id, "train/approx_kl")
    assert len(history) >= 1 and all(np.isfinite(m.value) for m in history)
    logged = MlflowClient().get_run(run.info.run_id).data.metrics
    assert {"train/clip_fraction", "train/explained_variance", "train/learning_rate",
            "rollout/end_drawdown_breach"} <= set(logged)
    assert "train/explained_variance" in result.last_logged

    dataset = SB3ModelDataset(filepath=str(tmp_path / "policy.zip"))
    dataset.save(result.model)
    loaded = dataset.load()
    obs = train_env.reset()
    for _ in range(100):
        masks = train_env.action_masks()
        actions, _ = loaded.predict(obs, action_masks=masks, deterministic=False)
        assert masks[np.arange(len(actions)), actions].all()
        obs, *_ = train_env.step(actions)


def test_resume_continues_steps_and_keeps_the_optimizer(tiny_config, envs, tmp_path):
    train_env, eval_env = envs
    work = tmp_path / "work"
    first = train_phase2(tiny_config, train_env, eval_env, 1, work, progress_bar=False)
    checkpoint, sidecar = latest_checkpoint(work / "checkpoints")
    assert sidecar["num_timesteps"] == 128
    saved_step = first.model.policy.optimizer.state_dict()["state"][0]["step"]
    assert saved_step > 0

    longer = PPOConfig(**{**tiny_config.__dict__, "total_timesteps": 256})
    resumed = train_phase2(longer, train_env, eval_env, 1, work, resume=True, progress_bar=False)
    assert resumed.resumed_from == checkpoint
    assert resumed.model.num_timesteps == 256  # continued, not restarted
    resumed_step = resumed.model.policy.optimizer.state_dict()["state"][0]["step"]
    # Adam kept counting: each run adds 2 rollouts x 2 epochs x 2 minibatches = 8 steps.
    assert resumed_step == 2 * saved_step


def test_backtest_baselines(synthetic_market):
    env = TradingVecEnv(synthetic_market, EngineConfig(episode_mode="full_session"), n_envs=1, phase=2)
    flat = summarize(run_backtest(env, flat_policy))
    assert flat["sessions"] == 3 and flat["total_net_pnl"] == 0.0 and flat["trades_per_session"] == 0
    assert flat["end_reasons"] == {"session_end": 3}
    first = run_backtest(env, random_policy(1))
    again = run_backtest(env, random_policy(1))
    assert first.equals(again)  # seeded and replayable: each backtest restarts at the first session
    assert first["trades"].sum() > 0


def test_registered_model_loads_by_alias_and_predicts(tiny_config, envs, tmp_path, tracking, synthetic_frames,
                                                       synthetic_ingestion):
    import mlflow

    train_env, eval_env = envs
    result = train_phase2(tiny_config, train_env, eval_env, 1, tmp_path / "work", progress_bar=False)
    policy_zip = tmp_path / "policy.zip"
    result.model.save(policy_zip)
    rules = TradingRules(CONTRACTS["NQ"], EngineConfig(), "09:30", "16:00")
    with mlflow.start_run():
        version = register_policy(policy_zip, name="phase2_policy", observation_dim=228,
                                  feature_scaler=synthetic_ingestion[2].to_dict(),
                                  observation_layout={"phase2_dim": 228}, trading_rules=rules,
                                  input_example=client_input_example(synthetic_frames[0], rules, 228), good=False)
    assert version == "1"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("phase2_policy", "newest").version) == "1"
    with pytest.raises(Exception):
        client.get_model_version_by_alias("phase2_policy", "good")  # it did not earn it

    model = load_registered_policy("phase2_policy", "newest")
    obs = train_env.reset()
    masks = train_env.action_masks()
    import pandas as pd

    frame = pd.DataFrame(obs, columns=list(OBSERVATION_NAMES[:228]))
    frame[MASK_COLUMNS] = masks
    actions = model.predict(frame)["action"].to_numpy()
    expected, _ = result.model.predict(obs, action_masks=masks, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert masks[np.arange(len(actions)), actions].all()


def test_resume_restores_the_env_rng_and_the_best_score_and_a_fresh_run_starts_clean(tiny_config, envs, tmp_path):
    import json

    train_env, eval_env = envs
    work = tmp_path / "work"
    train_phase2(tiny_config, train_env, eval_env, 1, work, progress_bar=False)
    _, sidecar = latest_checkpoint(work / "checkpoints")
    # A best so far that the resumed run cannot beat: a run that forgot it would save its first evaluation.
    best_file, best_zip = work / "best" / "best_score.json", work / "best" / "best_model.zip"
    unbeatable = {"best_mean_reward": 1e9, "num_timesteps": 128}
    best_file.write_text(json.dumps(unbeatable))
    best_model_bytes = best_zip.read_bytes()

    class Spy(TradingVecEnv):
        first_state = None

        def reset(self):
            obs = super().reset()
            if Spy.first_state is None:
                Spy.first_state = self.engine.rng.bit_generator.state
            return obs

    from hybrid_trader.env.engine import EngineConfig

    spy = Spy(train_env.engine.market, EngineConfig(), n_envs=2, phase=2, seed=0)
    expected = np.random.default_rng()
    expected.bit_generator.state = sidecar["env_rng_state"]
    longer = PPOConfig(**{**tiny_config.__dict__, "total_timesteps": 192})
    resumed = train_phase2(longer, spy, eval_env, 1, work, resume=True, progress_bar=False)
    # The first reset after resuming drew from the saved RNG state, not a reseeded one.
    expected.choice(spy.engine._random_starts, size=2)
    assert Spy.first_state == expected.bit_generator.state
    assert resumed.model.num_timesteps == 192
    assert resumed.history["eval/mean_reward"][-1][0] == 192  # the resumed run did evaluate ...
    assert json.loads(best_file.read_text()) == unbeatable  # ... and kept the best so far
    assert best_zip.read_bytes() == best_model_bytes

    train_phase2(tiny_config, train_env, eval_env, 1, work, progress_bar=False)  # resume: false
    assert latest_checkpoint(work / "checkpoints")[1]["num_timesteps"] == 128  # older, longer run gone


def test_ctrl_c_during_a_checkpoint_write_is_held_until_the_file_is_complete(tiny_config, envs, tmp_path):
    import os
    import signal

    from hybrid_trader.agents.callbacks import save_checkpoint
    from hybrid_trader.agents.phase2 import _new_model

    train_env, _ = envs
    model = _new_model(tiny_config, train_env)
    original_save = model.save

    def save_interrupted(path):
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-write
        original_save(path)

    model.save = save_interrupted
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, tmp_path, "checkpoint_0000000000")
    path, sidecar = latest_checkpoint(tmp_path)
    assert sidecar["num_timesteps"] == 0 and path.name == "checkpoint_0000000000.zip"
    from sb3_contrib import MaskablePPO

    MaskablePPO.load(path)  # complete and loadable
    assert not list(tmp_path.glob("*.partial"))
