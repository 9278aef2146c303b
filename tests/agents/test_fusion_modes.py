"""The fusion modes (``phase3.fusion``): hand-computed mixtures, masks after fusion, on-policy
log-probabilities, the RL-only override, save/load, and the modes built from a Phase 2 policy.

Where ``pi_RL`` must be known by hand, the action head is zeroed and its bias set, so ``pi_RL``
is the same for every observation (the zero bias gives the uniform 1/7).
"""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from hybrid_trader.advisor.advisor import Advice, AdvisorStats
from hybrid_trader.advisor.schedule import QueryScheduleConfig
from hybrid_trader.agents.adapter import ObservationAdapter, phase3_from_phase2, set_adapter_only
from hybrid_trader.agents.advised_env import AdvisedVecEnv
from hybrid_trader.agents.fusion import (
    ADVICE_AGE, ADVICE_CONFIDENCE, ADVICE_PRESENT, ADVICE_PROBABILITIES, FUSION_MODES, FusedMaskablePolicy,
    confidence_gate,
)
from hybrid_trader.agents.phase2 import PPOConfig
from hybrid_trader.agents.phase3 import Phase3Config
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.features.registry import HYBRID_DIM, PHASE2_DIM, PHASE3_DIM

ADVICE = [0.0, 0.6, 0.2, 0.2, 0.0, 0.0, 0.0]  # c = 0.6 over k = 3 allowed answers
UNIFORM = [0.0, 1 / 3, 1 / 3, 1 / 3, 0.0, 0.0, 0.0]  # no opinion among 3
MASK = [True, True, True, False, False, False, False]  # flat
LONG = [True, False, False, True, True, False, True]  # long: HOLD, the stop moves, EXIT


def make_policy(fusion: str = "fixed", **kwargs) -> FusedMaskablePolicy:
    """A hybrid policy whose adapter reads what the mode's adapter reads, initialised as
    :func:`phase3_from_phase2` leaves it (identity on the first 228 columns)."""
    torch.manual_seed(0)
    space = gym.spaces.Box(-np.inf, np.inf, shape=(HYBRID_DIM,), dtype=np.float32)
    kwargs.setdefault("net_arch", {"pi": [8], "vf": [8]})
    kwargs.setdefault("llm_weight", 0.2)
    policy = FusedMaskablePolicy(
        space, gym.spaces.Discrete(7), lambda _: 1e-3, fusion=fusion, features_extractor_class=ObservationAdapter,
        features_extractor_kwargs={"input_dim": HYBRID_DIM if fusion == "observation" else PHASE3_DIM}, **kwargs)
    for module in policy.modules():
        if isinstance(module, ObservationAdapter):
            module.reset_to_identity()
    return policy


def set_rl_uniform(policy: FusedMaskablePolicy) -> None:
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.zero_()


def observations(n: int, advice=ADVICE, present: float = 1.0, seed: int = 0) -> torch.Tensor:
    obs = torch.zeros((n, HYBRID_DIM))
    obs[:, :PHASE3_DIM] = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, PHASE3_DIM)),
                                          dtype=torch.float32)
    obs[:, ADVICE_PROBABILITIES] = torch.tensor(advice, dtype=torch.float32)
    obs[:, ADVICE_CONFIDENCE] = float(torch.tensor(advice, dtype=torch.float32).max())
    obs[:, ADVICE_AGE] = 0.3
    obs[:, ADVICE_PRESENT] = present
    return obs


def random_advice(n: int, seed: int) -> torch.Tensor:
    """Random observations with random opinions over the flat answers, present on every row."""
    rng = np.random.default_rng(seed)
    obs = observations(n, seed=seed)
    probabilities = np.zeros((n, 7))
    probabilities[:, :3] = rng.dirichlet(np.ones(3), size=n)
    obs[:, ADVICE_PROBABILITIES] = torch.as_tensor(probabilities, dtype=torch.float32)
    obs[:, ADVICE_CONFIDENCE] = obs[:, ADVICE_PROBABILITIES].max(dim=1).values
    obs[:, ADVICE_AGE] = torch.as_tensor(rng.uniform(0, 1, n), dtype=torch.float32)
    return obs


def perturb(policy: FusedMaskablePolicy, seed: int = 1) -> None:
    """Move the weights a fresh policy starts with at zero (the gate, the adapter's advice columns),
    and make the RL part far from uniform (SB3 initialises the action head with gain 0.01)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        policy.action_net.weight.mul_(100.0)
        for module in policy.modules():
            if isinstance(module, ObservationAdapter):
                module.linear.weight.add_(0.5 * torch.randn(module.linear.weight.shape, generator=generator))
        if policy.fusion == "learned_gate":
            policy.llm_gate.weight.add_(torch.randn(policy.llm_gate.weight.shape, generator=generator))


def probs(policy: FusedMaskablePolicy, obs: torch.Tensor, masks=None) -> torch.Tensor:
    with torch.no_grad():
        return policy.get_distribution(obs, action_masks=masks).distribution.probs


def mixture(w: float, advice=ADVICE) -> torch.Tensor:
    """``(1 - w) * uniform + w * advice``."""
    return (1 - w) / 7 + w * torch.tensor(advice)


# -- the formulas --------------------------------------------------------------------------------
def test_fixed_mode_mixes_with_w_on_every_advised_row():
    policy = make_policy("fixed")
    set_rl_uniform(policy)
    got = probs(policy, torch.cat([observations(1), observations(1, present=0.0)]))
    # 0.8 / 7 everywhere plus 0.2 x (0, 0.6, 0.2, 0.2, 0, 0, 0); without advice the uniform RL part.
    torch.testing.assert_close(got[0], torch.tensor([0.8 / 7, 0.8 / 7 + 0.12, 0.8 / 7 + 0.04, 0.8 / 7 + 0.04,
                                                     0.8 / 7, 0.8 / 7, 0.8 / 7]))
    torch.testing.assert_close(got[1], torch.full((7,), 1 / 7))


def test_confidence_mode_scales_w_by_the_confidence_above_uniform():
    policy = make_policy("confidence")
    set_rl_uniform(policy)
    # c = 0.6, k = 3: gate (0.6 - 1/3) / (1 - 1/3) = 0.4, w_eff = 0.2 x 0.4 = 0.08.
    torch.testing.assert_close(probs(policy, observations(1))[0], mixture(0.08))
    # (0.9, 0.1): c = 0.9, k = 2, gate 0.8, w_eff 0.16; half present: 0.08.
    sure = [0.9, 0.1, 0, 0, 0, 0, 0]
    torch.testing.assert_close(probs(policy, observations(1, sure))[0], mixture(0.16, sure))
    torch.testing.assert_close(probs(policy, observations(1, sure, present=0.5))[0], mixture(0.08, sure))


ONLY_BUY = [False, True, False, False, False, False, False]


@pytest.mark.parametrize("advice, masks", [(UNIFORM, None), (UNIFORM, MASK), ([1 / 7] * 7, None),
                                           ([1 / 7] * 7, [True] * 7), ([0, 1.0, 0, 0, 0, 0, 0], None),
                                           ([0, 1.0, 0, 0, 0, 0, 0], ONLY_BUY)],
                         ids=["uniform over 3", "uniform over the 3 allowed", "uniform over 7",
                              "uniform over the 7 allowed", "a single answer", "a single allowed answer"])
def test_confidence_mode_gives_exactly_pi_rl_for_an_opinion_without_choice(advice, masks):
    policy, fixed = make_policy("confidence", llm_weight=0.5), make_policy("fixed", llm_weight=0.5)
    for p in (policy, fixed):  # an RL part far from every opinion here
        with torch.no_grad():
            p.action_net.bias.copy_(torch.log(torch.tensor([0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.4])))
    obs = observations(5, advice, seed=2)
    masks = None if masks is None else np.array([masks] * 5)
    assert not confidence_gate(obs, masks).any()  # c = 1/k, or k = 1 (nothing to choose)
    with torch.no_grad():
        rl = policy.action_dist.proba_distribution(
            action_logits=torch.log_softmax(policy.action_net(policy._latents(obs)[0]), dim=-1))
        if masks is not None:
            rl.apply_masking(masks)
        assert torch.equal(policy.get_distribution(obs, masks).distribution.logits, rl.distribution.logits)
    if masks is None or masks[0].sum() > 1:
        assert (probs(fixed, obs, masks) - probs(policy, obs, masks)).abs().max() > 0.01  # fixed would have mixed


def test_a_certain_opinion_gets_the_full_w_among_the_allowed_answers():
    policy = make_policy("confidence")
    set_rl_uniform(policy)
    certain = [0, 1.0, 0, 0, 0, 0, 0]
    # Flat: k = 3 allowed, c = 1, gate 1, w_eff = w = 0.2: (0.8 / 7 + 0.2 on BUY, 0.8 / 7, 0.8 / 7) / (0.2 + 2.4 / 7).
    got = probs(policy, observations(1, certain), np.array([MASK]))[0]
    torch.testing.assert_close(got, torch.tensor([0.8 / 7, 0.8 / 7 + 0.2, 0.8 / 7, 0, 0, 0, 0]) / (0.2 + 2.4 / 7))
    # Without masks a one-hot opinion shows no choice (k = 1): the RL part alone.
    torch.testing.assert_close(probs(policy, observations(1, certain))[0], torch.full((7,), 1 / 7), rtol=0, atol=0)


def test_the_confidence_gate_is_clamped_and_zero_without_advice():
    obs = torch.cat([observations(1), observations(1, [0.5, 0.3, 0.2, 0, 0, 0, 0]), observations(1, [0] * 7, 0.0)])
    obs[0, ADVICE_CONFIDENCE] = 0.2  # below 1/3 (a stated confidence under uniform): 0, not negative
    torch.testing.assert_close(confidence_gate(obs), torch.tensor([0.0, 0.25, 0.0]))


def test_a_learned_w_is_gated_in_confidence_mode_and_in_the_optimizer():
    policy = make_policy("confidence", llm_weight=0.3, learn_llm_weight=True)
    set_rl_uniform(policy)
    torch.testing.assert_close(probs(policy, observations(1))[0], mixture(0.3 * 0.4))
    assert any(policy.llm_weight_logit is p for group in policy.optimizer.param_groups for p in group["params"])


def test_the_learned_gate_starts_at_the_fixed_w_fusion_on_any_state():
    gate = make_policy("learned_gate", llm_weight=0.2)
    fixed = make_policy("fixed", llm_weight=0.2)
    fixed.load_state_dict({k: v for k, v in gate.state_dict().items() if not k.startswith("llm_gate")})
    obs = random_advice(50, seed=3)
    obs[::2, ADVICE_PRESENT] = 0.0
    torch.testing.assert_close(probs(gate, obs), probs(fixed, obs), rtol=0, atol=1e-7)
    assert not gate.llm_gate.weight.any()
    assert float(gate.llm_gate.bias.detach()) == pytest.approx(math.log(0.2 / 0.8))


def test_the_learned_gate_reads_the_state_and_the_advice():
    policy = make_policy("learned_gate", llm_weight=0.2)
    set_rl_uniform(policy)
    confidence_input = policy.mlp_extractor.latent_dim_pi + (ADVICE_CONFIDENCE - PHASE3_DIM)
    with torch.no_grad():
        policy.llm_gate.weight[0, confidence_input] = 2.0
    # g = logit(0.2) + 2 c = -ln 4 + 1.2: w_eff = 1 / (1 + 4 exp(-1.2)).
    w = 1 / (1 + 4 * math.exp(-1.2))
    torch.testing.assert_close(probs(policy, observations(1))[0], mixture(w))
    with torch.no_grad():
        policy.llm_gate.weight.zero_()
        policy.llm_gate.weight[0, 0] = 1.0  # the actor's first latent unit: the weight now varies by state
    obs = observations(4, seed=5)
    with torch.no_grad():
        latent_pi = policy._latents(obs)[0]
        expected = torch.sigmoid(torch.logit(torch.tensor(0.2)) + latent_pi[:, 0])
        torch.testing.assert_close(policy.effective_weight(obs, latent_pi), expected)
        fused = torch.stack([mixture(float(w)) for w in expected])
    torch.testing.assert_close(probs(policy, obs), fused)
    assert expected.std() > 0.01


def test_the_learned_gate_is_in_the_optimizer_and_gets_a_gradient():
    policy = make_policy("learned_gate", llm_weight=0.2)
    in_optimizer = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert {id(policy.llm_gate.weight), id(policy.llm_gate.bias)} <= in_optimizer
    obs = random_advice(16, seed=4)
    _, log_prob, _ = policy.evaluate_actions(obs, torch.ones(16, dtype=torch.long),
                                             action_masks=np.array([MASK] * 16))
    log_prob.sum().backward()
    assert policy.llm_gate.weight.grad.abs().sum() > 0 and policy.llm_gate.bias.grad.abs() > 0
    # Without advice the gate has no effect, so no gradient either.
    policy.zero_grad()
    obs[:, ADVICE_PRESENT] = 0.0
    policy.evaluate_actions(obs, torch.ones(16, dtype=torch.long))[1].sum().backward()
    assert not policy.llm_gate.weight.grad.any()


def test_observation_mode_does_not_mix_but_its_adapter_reads_the_advice():
    policy = make_policy("observation")
    assert policy.features_extractor.linear.weight.shape == (PHASE2_DIM, HYBRID_DIM)
    obs = random_advice(20, seed=6)
    without = obs.clone()
    without[:, PHASE3_DIM:] = 0.0
    torch.testing.assert_close(probs(policy, obs), probs(policy, without), rtol=0, atol=0)  # zero at init
    with torch.no_grad():
        rl = torch.softmax(policy.action_net(policy._latents(obs)[0]), dim=-1)
    torch.testing.assert_close(probs(policy, obs), rl)  # w_eff = 0: pi is the RL part's own
    perturb(policy)
    assert (probs(policy, obs) - probs(policy, without)).abs().max() > 0.01


# -- in every mode --------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_masks_are_applied_after_the_fusion(fusion):
    policy = make_policy(fusion)
    perturb(policy)
    obs = random_advice(40, seed=7)
    obs[:, ADVICE_PROBABILITIES.start + 6] = 0.3  # mass on EXIT, masked when flat
    masks = np.array([MASK, LONG] * 20)
    masked = probs(policy, obs, masks)
    assert (masked[torch.as_tensor(~masks)] == 0).all()
    with torch.no_grad():  # the mixture over all 7 actions (the advice's EXIT mass included), then the mask
        latent_pi = policy._latents(obs)[0]
        w = (policy.effective_weight(obs, latent_pi, masks) * obs[:, ADVICE_PRESENT])[:, None]
        fused = (1 - w) * torch.softmax(policy.action_net(latent_pi), dim=-1) + w * obs[:, ADVICE_PROBABILITIES]
    kept = torch.where(torch.as_tensor(masks), fused, 0.0)
    torch.testing.assert_close(masked, kept / kept.sum(dim=1, keepdim=True))
    if fusion != "observation":
        assert w.max() > 0.05  # the advice was mixed in


@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_forward_stores_the_log_probability_evaluate_actions_gives(fusion):
    policy = make_policy(fusion)
    perturb(policy)
    obs = random_advice(64, seed=8)
    obs[::3, ADVICE_PRESENT] = 0.0
    masks = np.array([MASK, LONG] * 32)
    torch.manual_seed(3)
    with torch.no_grad():
        actions, _, log_prob = policy(obs, action_masks=masks)
        _, evaluated, _ = policy.evaluate_actions(obs, actions, action_masks=masks)
        fused = probs(policy, obs, masks)
    torch.testing.assert_close(log_prob, evaluated, rtol=0, atol=0)
    torch.testing.assert_close(log_prob, torch.log(fused[torch.arange(64), actions]))


@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_the_override_zero_gives_exactly_the_rl_part_without_advice(fusion):
    policy = make_policy(fusion)
    perturb(policy)
    obs = random_advice(30, seed=9)
    masks = np.array([MASK, LONG] * 15)
    policy.llm_weight_override = 0.0
    rl_only = probs(policy, obs, masks).numpy()
    np.testing.assert_allclose(rl_only, policy.rl_probabilities(obs.numpy(), masks), rtol=0, atol=1e-6)
    np.testing.assert_allclose(rl_only, policy.rl_probabilities(obs.numpy()[:, :PHASE3_DIM], masks), rtol=0,
                               atol=1e-6)
    with torch.no_grad():  # the log-probabilities are the RL part's log-softmax, not a mixture at weight 0
        no_advice = obs.clone()
        no_advice[:, PHASE3_DIM:] = 0.0
        rl_log = torch.log_softmax(policy.action_net(policy._latents(no_advice)[0]), dim=-1)
        torch.testing.assert_close(policy.get_distribution(obs).distribution.logits, rl_log, rtol=0, atol=1e-6)
    policy.llm_weight_override = None
    assert np.abs(probs(policy, obs, masks).numpy() - rl_only).max() > 0.01  # the advice mattered


@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_save_and_load_keep_the_mode_and_its_weights(tmp_path, fusion):
    policy = make_policy(fusion, llm_weight=0.35)
    perturb(policy)
    policy.save(tmp_path / "policy.pt")
    loaded = FusedMaskablePolicy.load(tmp_path / "policy.pt")
    assert loaded.fusion == fusion and loaded._get_constructor_parameters()["fusion"] == fusion
    obs = random_advice(10, seed=10)
    torch.testing.assert_close(probs(loaded, obs), probs(policy, obs), rtol=0, atol=0)


def test_a_policy_saved_before_the_modes_loads_as_fixed():
    policy = make_policy("fixed")
    data = policy._get_constructor_parameters()
    del data["fusion"]
    assert FusedMaskablePolicy(**data).fusion == "fixed"


# -- the rollout's weight -------------------------------------------------------------------------
def test_the_logged_weight_is_w_or_the_mean_effective_weight_of_the_advised_rows():
    fixed = make_policy("fixed", llm_weight=0.3)
    fixed(observations(2))
    assert fixed.rollout_llm_weight() == pytest.approx(0.3)
    policy = make_policy("confidence", llm_weight=0.5)
    # Gates 0.4 and 0 on two advised rows; a row without advice does not count.
    policy(torch.cat([observations(1), observations(1, UNIFORM), observations(1, present=0.0)]))
    policy.get_distribution(observations(5, [0.9, 0.1, 0, 0, 0, 0, 0]))  # not a rollout step: not counted
    assert policy.rollout_llm_weight() == pytest.approx(0.5 * 0.4 / 2)
    assert math.isnan(policy.rollout_llm_weight())  # read once: no advised row since
    observation = make_policy("observation")
    observation(observations(3))
    assert observation.rollout_llm_weight() == 0.0


# -- settings ----------------------------------------------------------------------------------------
def test_an_unknown_mode_is_rejected_naming_the_allowed_ones():
    message = r"^phase3\.fusion must be one of fixed, confidence, learned_gate, observation \(got 'gated'\)$"
    with pytest.raises(ValueError, match=message):
        make_policy("gated")
    ppo = PPOConfig(total_timesteps=81_920)
    with pytest.raises(ValueError, match=message):
        Phase3Config(ppo=ppo, fusion="gated")


def test_the_learned_gate_needs_a_positive_starting_weight_and_no_scalar_w():
    with pytest.raises(ValueError, match=r"learned_gate .* phase3\.llm_weight, which must be > 0"):
        make_policy("learned_gate", llm_weight=0.0)
    for fusion in ("learned_gate", "observation"):
        with pytest.raises(ValueError, match=f"learn_llm_weight needs a scalar w, which phase3.fusion {fusion}"):
            make_policy(fusion, learn_llm_weight=True)


def test_the_mode_is_read_from_the_parameters_and_defaults_to_fixed():
    with open(Path(__file__).parents[2] / "conf" / "base" / "parameters_phase3.yml") as f:
        params = yaml.safe_load(f)["phase3"]
    assert params["fusion"] == "fixed"
    assert Phase3Config.from_params(params).fusion == "fixed"
    assert Phase3Config.from_params({**params, "fusion": "confidence"}).fusion == "confidence"
    assert Phase3Config.from_params({k: v for k, v in params.items() if k != "fusion"}).fusion == "fixed"
    with pytest.raises(ValueError, match="phase3.fusion must be one of"):
        Phase3Config.from_params({**params, "fusion": "mixed"})


# -- built from a Phase 2 policy ----------------------------------------------------------------------
class FavouriteAdvisor:
    """Always 0.7 on SELL when allowed, the rest spread over the other allowed actions."""

    def __init__(self) -> None:
        self.stats = AdvisorStats()

    def advise(self, states, masks, env_ids=None, use_model=True):
        masks = np.asarray(masks, dtype=bool)
        probabilities = masks / masks.sum(axis=1, keepdims=True)
        for row, mask in zip(probabilities, masks):
            if mask[2] and mask.sum() > 1:
                row[mask] = 0.3 / (mask.sum() - 1)
                row[2] = 0.7
        n = len(states)
        return Advice(probabilities, probabilities.max(axis=1), np.ones(n, dtype=bool), np.ones(n, dtype=bool),
                      ["scripted"] * n, 0.0)


@pytest.fixture
def phase2_model(synthetic_market):
    from sb3_contrib import MaskablePPO

    env2 = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=2, seed=0)
    model = MaskablePPO("MlpPolicy", env2, n_steps=32, batch_size=32, n_epochs=1, seed=1,
                        policy_kwargs={"net_arch": [32, 32]}, device="cpu")
    model.learn(64)  # non-trivial weights
    return model


def advised_env(market, advisor=None) -> AdvisedVecEnv:
    venv = TradingVecEnv(market, EngineConfig(), n_envs=2, phase=3, seed=0)
    return AdvisedVecEnv(venv, np.zeros((market.n_bars, 8)), advisor,
                         QueryScheduleConfig(query_interval=2, query_cooldown=0))


@pytest.mark.parametrize("critic_adapter", [False, True])
def test_observation_mode_starts_as_the_phase2_policy_with_advice_present(synthetic_market, phase2_model,
                                                                          critic_adapter):
    model = phase3_from_phase2(phase2_model, advised_env(synthetic_market), fusion="observation",
                               critic_adapter=critic_adapter, n_steps=32, batch_size=32, seed=2)
    obs = random_advice(1000, seed=11)
    obs[:, :PHASE3_DIM] *= 3.0
    with torch.no_grad():
        p2 = phase2_model.policy.get_distribution(obs[:, :PHASE2_DIM]).distribution.probs
        p3 = model.policy.get_distribution(obs).distribution.probs
        v2, v3 = phase2_model.policy.predict_values(obs[:, :PHASE2_DIM]), model.policy.predict_values(obs)
    torch.testing.assert_close(p3, p2, rtol=0, atol=1e-6)
    torch.testing.assert_close(v3, v2, rtol=0, atol=1e-5)
    adapters = [m for m in model.policy.modules() if isinstance(m, ObservationAdapter)]
    assert len(adapters) == (2 if critic_adapter else 1)
    for adapter in adapters:
        weight = adapter.linear.weight
        assert weight.shape == (PHASE2_DIM, HYBRID_DIM)
        assert torch.equal(weight[:, :PHASE2_DIM], torch.eye(PHASE2_DIM)) and not weight[:, PHASE2_DIM:].any()
    # The warm-up trains the adapters, their advice columns included.
    assert set_adapter_only(model, True)[1] == len(adapters) * (HYBRID_DIM * PHASE2_DIM + PHASE2_DIM)


def test_the_learned_gate_is_built_from_phase2_and_trained_by_ppo(synthetic_market, phase2_model):
    env = advised_env(synthetic_market, FavouriteAdvisor())
    model = phase3_from_phase2(phase2_model, env, fusion="learned_gate", llm_weight=0.3, n_steps=32, batch_size=32,
                               seed=2, learning_rate=1e-3)
    env.attach_policy(model.policy)
    gate = model.policy.llm_gate
    assert any(gate.weight is p for group in model.policy.optimizer.param_groups for p in group["params"])
    assert not gate.weight.any() and float(gate.bias.detach()) == pytest.approx(math.log(0.3 / 0.7))
    model.learn(64)
    assert gate.weight.abs().sum() > 0 and float(gate.bias.detach()) != pytest.approx(math.log(0.3 / 0.7), abs=1e-7)
