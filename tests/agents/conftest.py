import mlflow
import pytest

from hybrid_trader.agents.phase2 import PPOConfig
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv

TINY = dict(net_arch=[16], n_steps=32, batch_size=32, n_epochs=2, n_envs=2, total_timesteps=128,
            eval_every_steps=64, checkpoint_every_steps=64, seed=3, target_kl=None)


@pytest.fixture
def tiny_config() -> PPOConfig:
    return PPOConfig(**TINY)


@pytest.fixture
def envs(synthetic_market):
    train = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=2, seed=0)
    evaluation = TradingVecEnv(synthetic_market, EngineConfig(episode_mode="full_session"), n_envs=1, phase=2)
    return train, evaluation


@pytest.fixture
def tracking(tmp_path):
    """An isolated MLflow store (SQLite, as the project uses)."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("tests")
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)
