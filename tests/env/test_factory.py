import pytest
from omegaconf import OmegaConf

from hybrid_trader.env.factory import engine_config, make_vec_env, market_for_split
from hybrid_trader.markets import CONTRACTS
from tests.conftest import PROJECT_ROOT


def _environment_params():
    return OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters.yml"))["environment"]


def test_configured_environment_parameters_are_valid():
    config = engine_config(_environment_params())
    assert (config.drawdown_limit, config.stop_atr_multiple, config.episode_mode) == (2500.0, 2.0, "random_start")
    assert config.threshold_lock_offset == 100.0  # Apex 50K: the threshold stops trailing at $50,100
    assert engine_config(_environment_params(), episode_mode="full_session").episode_mode == "full_session"
    assert config.exit_action is False and engine_config(_environment_params(), exit_action=True).exit_action is True
    with pytest.raises(TypeError):
        engine_config({"engine": {"stop_atr": 2}})


def test_market_for_split_keeps_only_that_splits_days(synthetic_frames):
    bars, features = synthetic_frames
    days = sorted(features["session_date"].unique())
    features = features.assign(split=features["session_date"].map(
        {days[0]: "train", days[1]: "validation", days[2]: "train"}))
    market = market_for_split(bars, features, CONTRACTS["NQ"], _environment_params(), "train")
    assert market.n_sessions == 2 and list(market.session_dates) == [days[0], days[2]]
    env = make_vec_env(market, _environment_params(), n_envs=2, phase=3, seed=0)
    assert env.reset().shape == (2, 261)
    with pytest.raises(ValueError, match="'test' split has no days"):
        market_for_split(bars, features, CONTRACTS["NQ"], _environment_params(), "test")
