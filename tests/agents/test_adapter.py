"""The 261 -> 228 adapter: identity at init, in the optimizer, warm-up rules."""

import numpy as np
import pytest
import torch

from hybrid_trader.advisor.schedule import QueryScheduleConfig
from hybrid_trader.agents.adapter import phase3_from_phase2, set_adapter_only, trainable_parameters, validate_warmup
from hybrid_trader.agents.advised_env import AdvisedVecEnv
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.features.registry import HYBRID_DIM


@pytest.fixture
def phase2_and_3(synthetic_market):
    from sb3_contrib import MaskablePPO

    env2 = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=2, seed=0)
    venv3 = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=3, seed=0)
    # No advisor: the opinion columns stay zero, so the policy is the RL part alone.
    env3 = AdvisedVecEnv(venv3, np.zeros((synthetic_market.n_bars, 8)), None, QueryScheduleConfig())
    phase2 = MaskablePPO("MlpPolicy", env2, n_steps=32, batch_size=32, n_epochs=1, seed=1,
                         policy_kwargs={"net_arch": [32, 32]}, device="cpu")
    phase2.learn(64)  # non-trivial weights
    phase3 = phase3_from_phase2(phase2, env3, n_steps=32, batch_size=32, n_epochs=1, seed=2, learning_rate=1e-3)
    return phase2, phase3, env3


def test_a_fresh_phase3_policy_acts_exactly_as_its_phase2_policy(phase2_and_3):
    phase2, phase3, _ = phase2_and_3
    obs = np.zeros((1000, HYBRID_DIM), dtype=np.float32)
    obs[:, :261] = np.random.default_rng(0).normal(scale=3.0, size=(1000, 261))
    obs = torch.as_tensor(obs)
    with torch.no_grad():
        p2 = phase2.policy.get_distribution(obs[:, :228]).distribution.probs
        p3 = phase3.policy.get_distribution(obs).distribution.probs
        v2, v3 = phase2.policy.predict_values(obs[:, :228]), phase3.policy.predict_values(obs)
    torch.testing.assert_close(p3, p2, rtol=0, atol=1e-6)
    torch.testing.assert_close(v3, v2, rtol=0, atol=1e-5)
    weight = phase3.policy.features_extractor.linear.weight
    assert torch.equal(weight[:, :228], torch.eye(228)) and not weight[:, 228:].any()


def test_the_adapter_is_in_the_optimizer_and_learns_during_warm_up(phase2_and_3):
    _, phase3, _ = phase2_and_3
    adapter = phase3.policy.features_extractor.linear.weight
    in_optimizer = {id(p) for group in phase3.policy.optimizer.param_groups for p in group["params"]}
    assert id(adapter) in in_optimizer

    total = trainable_parameters(phase3)
    before, after = set_adapter_only(phase3, True)
    assert before == total and after == adapter.numel() + 228  # weight + bias
    frozen = phase3.policy.action_net.weight.detach().clone()
    start = adapter.detach().clone()
    phase3.learn(64)
    assert not torch.equal(adapter.detach(), start)  # the adapter moved, its new columns included
    assert adapter.detach()[:, 228:].abs().sum() > 0
    assert torch.equal(phase3.policy.action_net.weight.detach(), frozen)
    assert set_adapter_only(phase3, False) == (after, total)


def test_a_warm_up_not_shorter_than_the_run_is_rejected():
    with pytest.raises(ValueError, match=r"adapter_warmup_steps \(100,000\) is not shorter than the run.*81,920"):
        validate_warmup(100_000, 81_920)
    validate_warmup(10_000, 81_920)
