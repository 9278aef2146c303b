"""Fusion of the RL distribution with the advisor's opinion, on hand-set networks and hand-computed mixtures.

The policies here are built directly (no environment, no training). Where the RL part's
distribution must be known by hand, its action head is zeroed and its bias set to chosen
log-probabilities, so ``pi_RL`` is the same for every observation.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from hybrid_trader.agents.adapter import ObservationAdapter
from hybrid_trader.agents.fusion import (
    ADVICE_AGE, ADVICE_CONFIDENCE, ADVICE_PRESENT, ADVICE_PROBABILITIES, FusedMaskablePolicy, fuse,
)
from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.features.registry import ADVICE_COLUMNS, HYBRID_DIM, PHASE3_DIM

RL = [0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05]  # the hand-set RL distribution
ADVICE = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # the advisor is sure of action 2
MASK = [True, True, True, False, False, False, False]  # flat


def make_policy(**kwargs) -> FusedMaskablePolicy:
    torch.manual_seed(0)
    space = gym.spaces.Box(-np.inf, np.inf, shape=(HYBRID_DIM,), dtype=np.float32)
    kwargs.setdefault("net_arch", {"pi": [8], "vf": [8]})
    return FusedMaskablePolicy(space, gym.spaces.Discrete(N_ACTIONS), lambda _: 1e-3, **kwargs)


def set_rl_distribution(policy: FusedMaskablePolicy, probabilities: list[float]) -> None:
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(torch.log(torch.tensor(probabilities)))


def observations(n: int, present: float, advice: list[float] = ADVICE, seed: int = 0) -> torch.Tensor:
    obs = torch.zeros((n, HYBRID_DIM))
    obs[:, :PHASE3_DIM] = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, PHASE3_DIM)),
                                          dtype=torch.float32)
    obs[:, ADVICE_PROBABILITIES] = torch.tensor(advice)
    obs[:, ADVICE_CONFIDENCE] = max(advice)
    obs[:, ADVICE_AGE] = 1.0
    obs[:, ADVICE_PRESENT] = present
    return obs


def test_the_advice_columns_follow_the_261_model_columns():
    assert (ADVICE_PROBABILITIES.start, ADVICE_PROBABILITIES.stop) == (261, 268)
    assert (ADVICE_CONFIDENCE, ADVICE_AGE, ADVICE_PRESENT) == (268, 269, 270) and HYBRID_DIM == 271
    # One probability per action, in the action space's order.
    assert [c.name for c in ADVICE_COLUMNS[:N_ACTIONS]] == [
        "advice_p_hold", "advice_p_buy", "advice_p_sell", "advice_p_move_sl_to_breakeven",
        "advice_p_enable_trailing_stop", "advice_p_disable_trailing_stop", "advice_p_exit"]
    assert ADVICE_COLUMNS[Action.EXIT].index == 261 + Action.EXIT


# -- fuse ------------------------------------------------------------------------------------
def test_fuse_mixes_probabilities_not_logits():
    logits = torch.zeros((2, N_ACTIONS))  # uniform: 1/7 each
    advice = torch.tensor([ADVICE, ADVICE])
    fused = fuse(logits, advice, torch.tensor([0.5, 0.25])).exp()
    # 0.5 * 1/7 + 0.5 * 1 = 8/14 on the advised action, 0.5 * 1/7 = 1/14 elsewhere;
    # 0.75 * 1/7 + 0.25 = 10/28 and 0.75 * 1/7 = 3/28.
    torch.testing.assert_close(fused[0], torch.tensor([1, 1, 8, 1, 1, 1, 1]) / 14)
    torch.testing.assert_close(fused[1], torch.tensor([3, 3, 10, 3, 3, 3, 3]) / 28)


def test_fuse_with_weight_zero_is_exactly_the_rl_log_softmax():
    # exp(-200) underflows in float32: a mixture computed through exp/log would give log(1e-12), not -200.
    logits = torch.tensor([[0.0, -200.0, 1.0, 2.0, 3.0, -50.0, -1.0]])
    out = fuse(logits, torch.tensor([ADVICE]), torch.tensor([0.0]))
    assert torch.equal(out, torch.log_softmax(logits, dim=-1))
    assert out[0, 1] < -200


def test_fuse_floors_a_zero_probability_at_1e_12_instead_of_minus_infinity():
    out = fuse(torch.zeros((1, N_ACTIONS)), torch.tensor([ADVICE]), torch.tensor([1.0]))
    assert out[0, 2] == 0.0
    assert torch.allclose(out[0, [0, 1, 3, 4, 5, 6]], torch.full((6,), math.log(1e-12)))


# -- the weight ------------------------------------------------------------------------------
@pytest.mark.parametrize("weight", [-0.1, 1.0])
def test_a_weight_outside_zero_to_one_is_rejected(weight):
    with pytest.raises(ValueError, match=r"^phase3\.llm_weight must be in \[0, 1\)$"):
        make_policy(llm_weight=weight)


def test_a_fixed_weight_is_a_saved_buffer_not_a_parameter():
    policy = make_policy(llm_weight=0.0)
    assert float(policy.llm_weight().detach()) == 0.0
    policy = make_policy(llm_weight=0.3)
    assert float(policy.llm_weight().detach()) == pytest.approx(0.3)
    assert "llm_weight_fixed" in policy.state_dict()
    assert not hasattr(policy, "llm_weight_logit")
    assert all(p is not policy.llm_weight_fixed for p in policy.parameters())


def test_a_learned_weight_starts_at_its_value_and_is_in_the_optimizer():
    policy = make_policy(llm_weight=0.3, learn_llm_weight=True)
    theta = policy.llm_weight_logit
    assert isinstance(theta, torch.nn.Parameter)
    assert float(theta.detach()) == pytest.approx(math.log(0.3 / 0.7))
    assert float(policy.llm_weight().detach()) == pytest.approx(0.3)
    assert any(theta is p for group in policy.optimizer.param_groups for p in group["params"])
    # 0 has no logit: it starts at 1e-4, which can still learn.
    assert float(make_policy(llm_weight=0.0, learn_llm_weight=True).llm_weight().detach()) == pytest.approx(1e-4, rel=1e-3)


def test_a_learned_weight_just_under_one_starts_at_0_9999_with_a_finite_logit():
    # 1 - 1e-9 passes the check but is 1.0 in float32, whose logit is infinite (and would never learn).
    policy = make_policy(llm_weight=1 - 1e-9, learn_llm_weight=True)
    assert math.isfinite(float(policy.llm_weight_logit.detach()))
    assert float(policy.llm_weight().detach()) == pytest.approx(0.9999, abs=1e-6)


def test_the_default_weight_is_a_fixed_0_2():
    policy = make_policy()
    assert not policy.learn_llm_weight
    assert float(policy.llm_weight()) == pytest.approx(0.2)


def test_the_override_replaces_the_weight_until_cleared():
    policy = make_policy(llm_weight=0.3, learn_llm_weight=True)
    policy.llm_weight_override = 0.0
    assert float(policy.llm_weight().detach()) == 0.0
    policy.llm_weight_override = 0.75
    assert float(policy.llm_weight().detach()) == 0.75
    policy.llm_weight_override = None
    assert float(policy.llm_weight().detach()) == pytest.approx(0.3)


@pytest.mark.parametrize("learn", [False, True])
def test_save_and_load_keep_the_weight_and_whether_it_learns(tmp_path, learn):
    policy = make_policy(llm_weight=0.35, learn_llm_weight=learn)
    policy.save(tmp_path / "policy.pt")
    loaded = FusedMaskablePolicy.load(tmp_path / "policy.pt")
    assert loaded.learn_llm_weight is learn
    assert float(loaded.llm_weight().detach()) == pytest.approx(0.35)
    assert loaded._get_constructor_parameters()["llm_weight"] == 0.35


# -- the fused distribution ------------------------------------------------------------------
def test_the_distribution_is_the_mixture_then_the_mask():
    policy = make_policy(llm_weight=0.5)
    set_rl_distribution(policy, RL)
    obs = torch.cat([observations(1, present=1.0), observations(1, present=0.0)])
    masks = np.array([MASK, MASK])
    probs = policy.get_distribution(obs, action_masks=masks).distribution.probs
    # With advice: 0.5 * RL + 0.5 * ADVICE = [0.2, 0.1, 0.55, 0.05, 0.05, 0.025, 0.025]; masked and
    # renormalised over 0.85. Without: RL masked, over 0.7.
    torch.testing.assert_close(probs[0], torch.tensor([0.2, 0.1, 0.55, 0, 0, 0, 0]) / 0.85)
    torch.testing.assert_close(probs[1], torch.tensor([0.4, 0.2, 0.1, 0, 0, 0, 0]) / 0.7)
    unmasked = policy.get_distribution(obs).distribution.probs
    torch.testing.assert_close(unmasked[0], torch.tensor([0.2, 0.1, 0.55, 0.05, 0.05, 0.025, 0.025]))


def test_the_weight_scales_with_the_present_flag():
    policy = make_policy(llm_weight=0.5)
    set_rl_distribution(policy, RL)
    probs = policy.get_distribution(observations(1, present=0.5)).distribution.probs
    # w * present = 0.25: 0.75 * RL + 0.25 * ADVICE.
    torch.testing.assert_close(probs[0], torch.tensor([0.3, 0.15, 0.325, 0.075, 0.075, 0.0375, 0.0375]))


def test_forward_acts_on_the_fused_distribution_and_reports_its_log_probability():
    policy = make_policy(llm_weight=0.5)
    set_rl_distribution(policy, RL)
    obs = torch.cat([observations(1, present=1.0), observations(1, present=0.0)]).double()  # any float dtype
    actions, values, log_prob = policy(obs, deterministic=True, action_masks=np.array([MASK, MASK]))
    assert actions.tolist() == [2, 0]  # the advice's action wins with advice; RL's favourite without
    torch.testing.assert_close(log_prob, torch.log(torch.tensor([0.55 / 0.85, 0.4 / 0.7])))
    torch.testing.assert_close(values, policy.predict_values(obs.float()))
    assert values.shape == (2, 1)


def test_forward_samples_unless_asked_to_be_deterministic():
    policy = make_policy(llm_weight=0.5)
    set_rl_distribution(policy, RL)
    obs = observations(400, present=1.0)
    masks = np.array([MASK] * 400)
    sampled = policy(obs, action_masks=masks)[0]
    assert set(sampled.tolist()) == {0, 1, 2}  # probabilities 0.24, 0.12, 0.65: each appears in 400 draws
    assert set(policy(obs, deterministic=True, action_masks=masks)[0].tolist()) == {2}


def test_evaluate_actions_gives_log_probability_and_entropy_of_the_fused_masked_distribution():
    policy = make_policy(llm_weight=0.5)
    set_rl_distribution(policy, RL)
    obs = observations(2, present=1.0).double()
    values, log_prob, entropy = policy.evaluate_actions(obs, torch.tensor([1, 2]), action_masks=np.array([MASK, MASK]))
    p = np.array([0.2, 0.1, 0.55]) / 0.85
    torch.testing.assert_close(log_prob, torch.tensor(np.log([p[1], p[2]]), dtype=torch.float32))
    torch.testing.assert_close(entropy, torch.full((2,), float(-(p * np.log(p)).sum())))
    torch.testing.assert_close(values, policy.predict_values(obs.float()))


def test_separate_feature_extractors_give_the_same_fused_distribution_and_their_own_value():
    policy = make_policy(llm_weight=0.5, features_extractor_class=ObservationAdapter,
                         features_extractor_kwargs={"input_dim": PHASE3_DIM}, share_features_extractor=False)
    set_rl_distribution(policy, RL)
    obs = observations(3, present=1.0)
    probs = policy.get_distribution(obs).distribution.probs
    torch.testing.assert_close(probs, torch.tensor([[0.2, 0.1, 0.55, 0.05, 0.05, 0.025, 0.025]] * 3))
    with torch.no_grad():
        expected_value = policy.value_net(policy.mlp_extractor.forward_critic(policy.vf_features_extractor(obs)))
        _, values, _ = policy(obs)
        torch.testing.assert_close(values, expected_value)
        torch.testing.assert_close(policy.evaluate_actions(obs, torch.tensor([0, 1, 2]))[0], expected_value)


# -- the RL part alone ------------------------------------------------------------------------
def test_rl_probabilities_ignore_the_advice_and_accept_the_261_columns():
    policy = make_policy(llm_weight=0.5)  # the default extractor reads all 271 columns
    obs = observations(4, present=1.0, seed=3)
    without_advice = obs.clone()
    without_advice[:, PHASE3_DIM:] = 0.0  # the RL part's view: no opinion
    expected = policy.get_distribution(without_advice).distribution.probs.detach().numpy()
    np.testing.assert_allclose(policy.rl_probabilities(obs.numpy()), expected, rtol=1e-6)
    np.testing.assert_allclose(policy.rl_probabilities(obs.numpy()[:, :PHASE3_DIM].astype(np.float64)), expected,
                               rtol=1e-6)
    assert not np.allclose(policy.get_distribution(obs).distribution.probs.detach().numpy(), expected)


def test_rl_probabilities_under_a_mask_renormalise_over_the_allowed_actions():
    policy = make_policy(llm_weight=0.5)
    set_rl_distribution(policy, RL)
    masks = np.array([MASK, [True, False, False, True, True, False, True]])  # flat; long, EXIT allowed
    probabilities = policy.rl_probabilities(observations(2, present=1.0).numpy(), masks)
    np.testing.assert_allclose(probabilities, [[0.4 / 0.7, 0.2 / 0.7, 0.1 / 0.7, 0, 0, 0, 0],
                                               [0.4 / 0.65, 0, 0, 0.1 / 0.65, 0.1 / 0.65, 0, 0.05 / 0.65]],
                               rtol=1e-6)
    np.testing.assert_allclose(policy.rl_probabilities(observations(1, present=1.0).numpy()), [RL], rtol=1e-6)
