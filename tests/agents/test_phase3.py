"""Phase 3: query schedule, advised environments, fusion inside the policy, warm-up, telemetry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybrid_trader.advisor.advisor import Advice, Advisor, AdvisorConfig, AdvisorStats
from hybrid_trader.advisor.schedule import QuerySchedule, QueryScheduleConfig
from hybrid_trader.agents.adapter import ObservationAdapter, phase3_from_phase2
from hybrid_trader.agents.advised_env import AdvisedVecEnv, AdvisorTelemetry, advisor_market_inputs
from hybrid_trader.agents.fusion import ADVICE_CONFIDENCE, ADVICE_PRESENT, ADVICE_PROBABILITIES
from hybrid_trader.agents.phase2 import PPOConfig
from hybrid_trader.agents.phase3 import Phase3Config, WarmupCallback
from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.env.engine import EngineConfig
from hybrid_trader.env.vec_env import TradingVecEnv
from hybrid_trader.features.registry import HYBRID_DIM, PHASE3_DIM


class ScriptedAdvisor:
    """Always prefers one action (when allowed): 0.7 on it, the rest spread over the other allowed ones."""

    def __init__(self, favourite: int = Action.SELL) -> None:
        self.favourite = favourite
        self.stats = AdvisorStats()
        self.calls: list[int] = []

    def advise(self, states, masks, env_ids=None, use_model=True):
        n = len(states)
        self.calls.append(n)
        masks = np.asarray(masks, dtype=bool)
        probabilities = masks / masks.sum(axis=1, keepdims=True)
        for row, mask in zip(probabilities, masks):
            if mask[self.favourite]:
                row[mask] = 0.3 / max(mask.sum() - 1, 1)
                row[self.favourite] = 0.7 if mask.sum() > 1 else 1.0
        self.stats.queries += n
        return Advice(probabilities, probabilities.max(axis=1), np.ones(n, dtype=bool), np.ones(n, dtype=bool),
                      ["scripted"] * n, 0.0)


@pytest.fixture
def raw_inputs(synthetic_ingestion):
    from hybrid_trader.advisor.prescore import advisor_bar_features

    # The same three sessions as synthetic_frames, unscaled (the prompt reads trader's units),
    # with the raw session_vol_ratio from the scaler's volatility profile.
    _, features, scaler = synthetic_ingestion
    features = advisor_bar_features(features, scaler)
    return advisor_market_inputs(features, np.ones(len(features), dtype=bool))


def advised(market, inputs, advisor=None, n_envs=2, seed=0, mode="sync", **schedule):
    venv = TradingVecEnv(market, EngineConfig(), n_envs=n_envs, phase=3, seed=seed)
    return AdvisedVecEnv(venv, inputs, advisor, QueryScheduleConfig(**schedule), mode=mode)


@pytest.fixture
def phase2_model(synthetic_market):
    from sb3_contrib import MaskablePPO

    env2 = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=2, seed=0)
    model = MaskablePPO("MlpPolicy", env2, n_steps=32, batch_size=32, n_epochs=1, seed=1,
                        policy_kwargs={"net_arch": [32, 32]}, device="cpu")
    model.learn(64)
    return model


# -- the query schedule -------------------------------------------------------------------
def test_query_schedule_on_a_scripted_sequence():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=5, confidence_threshold=0.6, query_cooldown=2), 1)
    schedule.reset(side=np.array([0]))
    #          bar:  0    1    2    3    4    5    6    7    8    9    10   11   12   13   14   15
    top = np.array([.9, .9, .9, .9, .9, .9, .5, .9, .9, .9, .9, .9, .9, .9, .4, .4])
    side = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    asked = [int(schedule.due(np.array([p]), np.array([s]))[0]) for p, s in zip(top, side)]
    # 0: first bar of the episode; 5: interval; 6: uncertain but within the cooldown of 5;
    # 8: position change (cooldown over); 13: interval (5 after 8); 14: uncertain but cooling
    # down; 15: still cooling down (13 + 2), so not asked.
    assert [i for i, a in enumerate(asked) if a] == [0, 5, 8, 13]
    assert schedule.trigger_counts == {"interval": 3, "uncertain": 0, "position_change": 1}


def test_an_uncertain_policy_is_asked_every_third_bar_and_a_change_waits_for_the_cooldown():
    schedule = QuerySchedule(QueryScheduleConfig(query_interval=5, confidence_threshold=0.6, query_cooldown=2), 2)
    schedule.reset(side=np.zeros(2, dtype=int))
    asked = []
    for bar in range(9):
        side = np.array([0, 1 if bar >= 1 else 0])  # env 1 enters a position at bar 1, inside its cooldown
        asked.append(schedule.due(np.array([0.3, 0.95]), side))
    asked = np.array(asked)
    assert np.flatnonzero(asked[:, 0]).tolist() == [0, 3, 6]
    assert np.flatnonzero(asked[:, 1]).tolist() == [0, 3, 8]  # the change at bar 1 is served at bar 3


def test_bad_schedule_settings_are_rejected():
    with pytest.raises(ValueError, match="query_interval"):
        QueryScheduleConfig(query_interval=0)
    with pytest.raises(ValueError, match="confidence_threshold"):
        QueryScheduleConfig(confidence_threshold=1.5)


# -- the advised environment ---------------------------------------------------------------
def test_opinions_enter_the_observation_and_telemetry_counts_them(synthetic_market, raw_inputs):
    advisor = ScriptedAdvisor(favourite=Action.SELL)
    env = advised(synthetic_market, raw_inputs, advisor, n_envs=3)
    obs = env.reset()
    assert obs.shape == (3, HYBRID_DIM)
    assert advisor.calls == [3]  # the first bar asks for every environment, in one batch
    np.testing.assert_allclose(obs[:, ADVICE_PROBABILITIES][:, Action.SELL], 0.7)
    assert (obs[:, ADVICE_PRESENT] == 1).all()
    # Without an attached policy the RL argmax reads HOLD: every SELL opinion disagrees.
    assert env.telemetry.answers == 3 and env.telemetry.disagreements == 3
    masks = env.action_masks()
    actions = np.where(masks[:, Action.SELL], Action.SELL, Action.HOLD)
    env.step(actions)
    assert env.telemetry.overrides == int(masks[:, Action.SELL].sum())


def test_without_an_answer_nothing_counts_as_agreement(synthetic_market, raw_inputs):
    env = advised(synthetic_market, raw_inputs, advisor=None)
    obs = env.reset()
    for _ in range(5):
        obs, *_ = env.step(np.zeros(2, dtype=int))
    assert not obs[:, PHASE3_DIM:].any()  # no opinion: all advice columns zero
    rates = env.telemetry.rates()
    assert env.telemetry.queries == 0 and np.isnan(rates["disagreement_rate"]) and np.isnan(rates["agreement_rate"])


def test_opinions_expire_after_max_advice_age(synthetic_market, raw_inputs):
    advisor = ScriptedAdvisor()
    venv = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=1, phase=3, seed=0)
    env = AdvisedVecEnv(venv, raw_inputs, advisor, QueryScheduleConfig(query_interval=50, query_cooldown=0),
                        max_advice_age=3)
    obs = env.reset()
    ages = []
    for _ in range(5):
        ages.append(float(obs[0, ADVICE_PRESENT]))
        obs, _, done, _ = env.step(np.zeros(1, dtype=int))
        assert not done[0]
    assert ages == [1.0, 1.0, 1.0, 1.0, 0.0]  # asked at bar 0, dropped once older than 3 bars


def test_a_failing_advisor_leaves_training_running_and_counted(synthetic_market, raw_inputs, phase2_model, builder):
    class Broken:
        identity = "broken"
        device = "cpu"

        def option_logprobs(self, *args, **kwargs):
            raise RuntimeError("model crashed")

    advisor = Advisor(Broken(), builder, AdvisorConfig(max_consecutive_failures=3))
    env = advised(synthetic_market, raw_inputs, advisor)
    model = phase3_from_phase2(phase2_model, env, n_steps=32, batch_size=32, n_epochs=1, seed=2)
    env.attach_policy(model.policy)
    model.learn(64)
    assert model.num_timesteps == 64
    assert advisor.stats.failures == 3 and advisor.stats.disabled
    assert env.telemetry.queries > 0 and env.telemetry.answers == 0


def test_async_mode_adopts_worker_answers_with_their_age(synthetic_market, raw_inputs, tiny_backend, builder):
    from hybrid_trader.advisor.worker import AsyncAdvisor

    advisor = Advisor(tiny_backend, builder, AdvisorConfig())
    worker = AsyncAdvisor(advisor)
    venv = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=3, seed=0)
    env = AdvisedVecEnv(venv, raw_inputs, advisor, QueryScheduleConfig(query_interval=50), mode="async",
                        worker=worker, max_advice_age=20)
    try:
        obs = env.reset()
        assert env.telemetry.queued == 2 and not obs[:, ADVICE_PRESENT].any()  # misses: nothing yet
        assert worker.drain(30)
        obs, _, done, _ = env.step(np.zeros(2, dtype=int))
        assert not done.any()
        assert (obs[:, ADVICE_PRESENT] == 1).all() and env.telemetry.answers == 2
        np.testing.assert_allclose(obs[:, ADVICE_PROBABILITIES].sum(axis=1), 1.0, atol=1e-6)
    finally:
        worker.close()
    assert not worker._thread.is_alive()


class MissingAdvisor:
    """Never has the answer cached (async mode then asks the worker)."""

    stats = AdvisorStats()

    def advise(self, states, masks, env_ids=None, use_model=True):
        n = len(states)
        return Advice(np.full((n, N_ACTIONS), np.nan), np.full(n, np.nan), np.zeros(n, dtype=bool),
                      np.zeros(n, dtype=bool), ["state"] * n, 0.0)


class HandWorker:
    """A worker whose answers the test writes by hand: key -> (asked at step, probabilities, confidence)."""

    def __init__(self):
        self.submitted, self.answers = [], {}

    def submit(self, states, masks, env_ids, step):
        self.submitted.append((list(env_ids), step))
        return True

    def latest(self, env_ids, step, max_age):
        from hybrid_trader.advisor.worker import _fresh_answers

        return _fresh_answers(self.answers, env_ids, step, max_age)


def test_an_answer_to_a_query_from_before_a_reset_is_never_adopted(synthetic_market, raw_inputs):
    worker = HandWorker()
    venv = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=1, phase=3, seed=0)
    env = AdvisedVecEnv(venv, raw_inputs, MissingAdvisor(), QueryScheduleConfig(query_interval=50), mode="async",
                        worker=worker)
    env.reset()
    env.reset()  # e.g. an evaluation starting over: a new episode before the first answer came
    (first_key,), first_step = worker.submitted[0]
    (second_key,), second_step = worker.submitted[1]
    assert first_key == second_key and second_step > first_step
    hold = np.array([1.0, 0, 0, 0, 0, 0, 0])
    worker.answers[first_key] = (first_step, hold, 1.0)  # the stale answer arrives
    obs, *_ = env.step(np.zeros(1, dtype=int))
    assert obs[0, ADVICE_PRESENT] == 0 and env.telemetry.answers == 0
    worker.answers[first_key] = (second_step, hold, 1.0)  # the answer to this episode's query
    obs, *_ = env.step(np.zeros(1, dtype=int))
    assert obs[0, ADVICE_PRESENT] == 1 and env.telemetry.answers == 1


def test_environments_sharing_a_worker_never_receive_each_others_answers(synthetic_market, raw_inputs):
    worker = HandWorker()
    envs = [AdvisedVecEnv(TradingVecEnv(synthetic_market, EngineConfig(), n_envs=2, phase=3, seed=k), raw_inputs,
                          MissingAdvisor(), QueryScheduleConfig(query_interval=50), mode="async", worker=worker)
            for k in range(2)]
    for env in envs:
        env.reset()
    keys = [tuple(k) for k, _ in worker.submitted]
    assert len(set(keys[0]) | set(keys[1])) == 4  # four environments, four worker keys
    sell = np.array([0, 0, 1.0, 0, 0, 0, 0])
    worker.answers[keys[0][0]] = (worker.submitted[0][1], sell, 1.0)  # only the first wrapper's env 0
    observed = [env.step(np.zeros(2, dtype=int))[0] for env in envs]
    assert observed[0][:, ADVICE_PRESENT].tolist() == [1, 0] and not observed[1][:, ADVICE_PRESENT].any()


# -- the fused policy ------------------------------------------------------------------------
def test_a_fresh_hybrid_without_advice_acts_exactly_as_phase2(synthetic_market, raw_inputs, phase2_model):
    env = advised(synthetic_market, raw_inputs)
    model = phase3_from_phase2(phase2_model, env, llm_weight=0.4, n_steps=32, batch_size=32, seed=2)
    obs = np.zeros((1000, HYBRID_DIM), dtype=np.float32)
    obs[:, :PHASE3_DIM] = np.random.default_rng(0).normal(scale=3.0, size=(1000, PHASE3_DIM))
    obs = torch.as_tensor(obs)
    with torch.no_grad():
        p2 = phase2_model.policy.get_distribution(obs[:, :228]).distribution.probs
        p3 = model.policy.get_distribution(obs).distribution.probs
    torch.testing.assert_close(p3, p2, rtol=0, atol=1e-6)


def test_a_separate_critic_adapter_also_starts_as_the_identity(synthetic_market, raw_inputs, phase2_model):
    from hybrid_trader.agents.adapter import set_adapter_only

    env = advised(synthetic_market, raw_inputs)
    model = phase3_from_phase2(phase2_model, env, critic_adapter=True, n_steps=32, batch_size=32, seed=2)
    obs = np.zeros((500, HYBRID_DIM), dtype=np.float32)
    obs[:, :PHASE3_DIM] = np.random.default_rng(1).normal(scale=3.0, size=(500, PHASE3_DIM))
    obs = torch.as_tensor(obs)
    with torch.no_grad():
        torch.testing.assert_close(model.policy.predict_values(obs), phase2_model.policy.predict_values(obs[:, :228]),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(model.policy.get_distribution(obs).distribution.probs,
                                   phase2_model.policy.get_distribution(obs[:, :228]).distribution.probs,
                                   rtol=0, atol=1e-6)
    adapter_size = 261 * 228 + 228
    assert set_adapter_only(model, True)[1] == 2 * adapter_size  # the actor's and the critic's adapters


def test_the_stored_log_probability_is_the_fused_distributions(synthetic_market, raw_inputs, phase2_model):
    w = 0.4
    env = advised(synthetic_market, raw_inputs, ScriptedAdvisor(Action.SELL), n_envs=2, query_interval=2,
                  query_cooldown=0)
    model = phase3_from_phase2(phase2_model, env, llm_weight=w, n_steps=32, batch_size=32, seed=2)
    env.attach_policy(model.policy)
    _, callback = model._setup_learn(32, callback=None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=32)
    buffer = model.rollout_buffer
    obs = torch.as_tensor(buffer.observations.reshape(-1, HYBRID_DIM))
    masks = buffer.action_masks.reshape(-1, N_ACTIONS).astype(bool)
    actions = buffer.actions.reshape(-1).astype(int)
    with torch.no_grad():
        policy = model.policy
        rl = torch.softmax(policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(obs))),
                           dim=-1).numpy().astype(np.float64)
    present = obs[:, ADVICE_PRESENT].numpy()[:, None]
    advice = obs[:, ADVICE_PROBABILITIES].numpy().astype(np.float64)
    fused = (1 - w * present) * rl + w * present * advice
    fused = np.where(masks, fused, 0.0)
    fused /= fused.sum(axis=1, keepdims=True)
    expected = np.log(fused[np.arange(len(actions)), actions])
    np.testing.assert_allclose(buffer.log_probs.reshape(-1), expected, atol=1e-5)
    assert present.mean() > 0.3  # the check covers steps with advice ...
    rl_masked = np.where(masks, rl, 0.0) / np.where(masks, rl, 0.0).sum(axis=1, keepdims=True)
    assert np.abs(np.log(rl_masked[np.arange(len(actions)), actions]) - expected).max() > 1e-3  # ... where it matters


def test_a_learned_llm_weight_is_in_the_optimizer(synthetic_market, raw_inputs, phase2_model):
    env = advised(synthetic_market, raw_inputs, ScriptedAdvisor())
    model = phase3_from_phase2(phase2_model, env, llm_weight=0.3, learn_llm_weight=True, n_steps=32,
                               batch_size=32, seed=2)
    env.attach_policy(model.policy)
    theta = model.policy.llm_weight_logit
    assert any(theta is p for group in model.policy.optimizer.param_groups for p in group["params"])
    assert float(model.policy.llm_weight().detach()) == pytest.approx(0.3, abs=1e-6)
    start = theta.detach().clone()
    model.learn(64)
    assert not torch.equal(theta.detach(), start)


# -- warm-up ------------------------------------------------------------------------------------
def test_warm_up_trains_the_adapter_alone_then_everything(synthetic_market, raw_inputs, phase2_model):
    env = advised(synthetic_market, raw_inputs, ScriptedAdvisor())
    model = phase3_from_phase2(phase2_model, env, n_steps=32, batch_size=32, n_epochs=2, seed=2,
                               learning_rate=1e-3)
    env.attach_policy(model.policy)
    adapter = model.policy.features_extractor.linear.weight
    phase2_layer = model.policy.mlp_extractor.policy_net[0].weight
    warmup = WarmupCallback(64)
    start_adapter, start_layer = adapter.detach().clone(), phase2_layer.detach().clone()
    model.learn(64, callback=warmup)  # one rollout of 2 x 32 steps, begun inside the warm-up
    assert warmup.active and warmup.unfrozen_at is None
    assert [u["adapter_only"] for u in warmup.updates] == [True]
    assert not torch.equal(adapter.detach(), start_adapter)
    assert torch.equal(phase2_layer.detach(), start_layer)  # the warm-up update left Phase 2 alone
    assert warmup.counts["warmup"] == adapter.numel() + adapter.shape[0]  # weight + bias
    mid_adapter = adapter.detach().clone()
    after = WarmupCallback(64)
    model.learn(64, callback=after, reset_num_timesteps=False)
    assert [u["adapter_only"] for u in after.updates] == [False]
    assert after.counts["total"] == sum(p.numel() for p in model.policy.parameters())
    assert not torch.equal(phase2_layer.detach(), start_layer)  # after the warm-up both train
    assert not torch.equal(adapter.detach(), mid_adapter)


def test_the_unfreeze_happens_inside_one_run_and_is_recorded(synthetic_market, raw_inputs, phase2_model):
    env = advised(synthetic_market, raw_inputs, ScriptedAdvisor())
    model = phase3_from_phase2(phase2_model, env, n_steps=32, batch_size=32, n_epochs=1, seed=2)
    env.attach_policy(model.policy)
    warmup = WarmupCallback(100)  # rollouts begin at 0, 64 (warm-up), 128 and 192 (all weights)
    model.learn(256, callback=warmup)
    assert warmup.unfrozen_at == 128 and warmup.warmup_env_steps == 128
    assert [u["adapter_only"] for u in warmup.updates] == [True, True, False, False]
    assert all("train/approx_kl" in u for u in warmup.updates)
    assert warmup.counts["after_unfreeze"] == warmup.counts["total"] > warmup.counts["warmup"]


def test_a_warm_up_not_shorter_than_the_run_is_rejected_by_the_config():
    ppo = PPOConfig(n_steps=32, batch_size=32, n_envs=2, total_timesteps=81_920)
    with pytest.raises(ValueError, match=r"adapter_warmup_steps \(100,000\) is not shorter than the run"):
        Phase3Config(ppo=ppo, adapter_warmup_steps=100_000)
    with pytest.raises(ValueError, match="llm_weight"):
        Phase3Config(ppo=ppo, adapter_warmup_steps=1_000, llm_weight=1.0)
    assert Phase3Config(ppo=ppo, adapter_warmup_steps=10_000).adapter_warmup_steps == 10_000


def test_telemetry_rates_follow_their_definitions():
    t = AdvisorTelemetry(steps=100, queries=20, cache_hits=15, queued=5, answers=16, confidence_sum=8.0,
                         disagreements=4, advice_steps=60, overrides=3, advisor_ms=50.0)
    rates = t.rates()
    assert rates == {"query_rate": 0.2, "cache_hit_rate": 0.75, "mean_confidence": 0.5, "disagreement_rate": 0.25,
                     "agreement_rate": 0.75, "advice_coverage": 0.6, "override_rate": 0.03,
                     "advisor_ms_per_step": 0.5}


# -- the RL part's own distribution --------------------------------------------------------------
def _perturbed_hybrid(synthetic_market, raw_inputs, phase2_model, **kwargs):
    """A hybrid whose adapter is no longer the identity (as after training)."""
    env = advised(synthetic_market, raw_inputs)
    model = phase3_from_phase2(phase2_model, env, n_steps=32, batch_size=32, seed=2, **kwargs)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for adapter in (m for m in model.policy.modules() if isinstance(m, ObservationAdapter)):
            adapter.linear.weight.add_(0.05 * torch.randn(adapter.linear.weight.shape, generator=generator))
    return model


@pytest.mark.parametrize("critic_adapter", [False, True])
def test_rl_probabilities_are_the_policys_masked_distribution_without_advice(synthetic_market, raw_inputs,
                                                                              phase2_model, critic_adapter):
    model = _perturbed_hybrid(synthetic_market, raw_inputs, phase2_model, llm_weight=0.6,
                              critic_adapter=critic_adapter)
    rng = np.random.default_rng(5)
    obs = np.zeros((200, HYBRID_DIM), dtype=np.float32)
    obs[:, :PHASE3_DIM] = rng.normal(scale=2.0, size=(200, PHASE3_DIM))
    obs[:, ADVICE_PROBABILITIES] = rng.dirichlet(np.ones(N_ACTIONS), size=200)
    obs[:, ADVICE_PRESENT] = 1.0
    flat, long = [True, True, True, False, False, False, False], [True, False, False, True, True, False, True]
    masks = np.array([flat, long] * 100)

    got = model.policy.rl_probabilities(obs, masks)
    policy = model.policy
    without_advice = obs.copy()
    without_advice[:, PHASE3_DIM:] = 0.0
    with torch.no_grad():
        expected = policy.get_distribution(torch.as_tensor(without_advice), masks).distribution.probs.numpy()
        fused = policy.get_distribution(torch.as_tensor(obs), masks).distribution.probs.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert (got[~masks] == 0).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    assert np.abs(fused - got).max() > 0.05  # the advice columns, present here, are not read
    np.testing.assert_array_equal(model.policy.rl_probabilities(obs[:, :PHASE3_DIM], masks), got)
    unmasked = model.policy.rl_probabilities(obs)  # no masks: every action
    assert (unmasked > 0).all()
    np.testing.assert_allclose(got[::2, :3], unmasked[::2, :3] / unmasked[::2, :3].sum(axis=1, keepdims=True),
                               atol=1e-6)


class RecordingAdvisor(ScriptedAdvisor):
    """The scripted advisor that also records which environments asked."""

    def __init__(self) -> None:
        super().__init__(Action.SELL)
        self.asked: list[list[int]] = []

    def advise(self, states, masks, env_ids=None, use_model=True):
        self.asked.append(list(env_ids))
        return super().advise(states, masks, env_ids, use_model)


def test_rl_probabilities_drive_the_uncertain_trigger_and_the_disagreement_count(synthetic_market, raw_inputs,
                                                                                phase2_model):
    model = _perturbed_hybrid(synthetic_market, raw_inputs, phase2_model)
    schedule = dict(query_interval=1000, query_cooldown=0)

    # A first pass without an advisor measures the RL part's top probability at each bar.
    probe = advised(synthetic_market, raw_inputs, None, n_envs=3, seed=7, confidence_threshold=0.5, **schedule)
    probe.attach_policy(model.policy)
    obs, rl = probe.reset(), []
    for _ in range(12):
        rl.append(model.policy.rl_probabilities(obs, probe.action_masks()))
        obs, _, done, _ = probe.step(np.zeros(3, dtype=int))
        assert not done.any()
    tops = np.array([r.max(axis=1) for r in rl])
    threshold = float(np.median(tops[1:]))  # uncertain at about half of the later bars

    advisor = RecordingAdvisor()
    env = advised(synthetic_market, raw_inputs, advisor, n_envs=3, seed=7, confidence_threshold=threshold, **schedule)
    env.attach_policy(model.policy)
    env.reset()
    for _ in range(11):
        env.step(np.zeros(3, dtype=int))  # HOLD: flat throughout, so only "uncertain" asks after bar 0
    expected = [[0, 1, 2]] + [np.flatnonzero(top < threshold).tolist() for top in tops[1:]]
    assert advisor.asked == [e for e in expected if e]
    assert 0 < sum(map(len, expected[1:])) < 33
    assert env.schedule.trigger_counts["uncertain"] == sum(map(len, expected[1:]))
    # Each answer prefers SELL; it disagrees where the RL part's masked argmax is not SELL.
    rl_argmax = [r.argmax(axis=1) for r in rl]
    assert env.telemetry.disagreements == sum(int((rl_argmax[bar][e] != Action.SELL).sum())
                                              for bar, e in enumerate(expected))
    assert env.telemetry.answers == sum(map(len, expected))


# -- an answer that arrives after the position changed -------------------------------------------
def _asked_flat_then_bought(synthetic_market, raw_inputs):
    """An async env that asked while flat, then went long before the answer came."""
    worker = HandWorker()
    venv = TradingVecEnv(synthetic_market, EngineConfig(), n_envs=1, phase=3, seed=0)
    env = AdvisedVecEnv(venv, raw_inputs, MissingAdvisor(), QueryScheduleConfig(query_interval=50, query_cooldown=5),
                        mode="async", worker=worker, max_advice_age=20)
    env.reset()
    (key,), asked_flat = worker.submitted[0]
    assert env.action_masks()[0].tolist() == [True, True, True, False, False, False, False]  # flat
    env.step(np.array([Action.BUY]))
    return env, worker, key, asked_flat


def test_an_async_answer_is_remasked_to_the_actions_allowed_when_it_arrives(synthetic_market, raw_inputs):
    env, worker, key, asked_flat = _asked_flat_then_bought(synthetic_market, raw_inputs)
    masks = env.action_masks()[0]
    assert env.engine.side[0] == 1 and not masks[Action.BUY] and not masks[Action.SELL]
    # The answer to the flat query arrives now that the account is long: entries are no longer allowed.
    worker.answers[key] = (asked_flat, np.array([0.2, 0.5, 0.3, 0, 0, 0, 0]), 0.5)
    obs, *_ = env.step(np.array([Action.HOLD]))
    assert obs[0, ADVICE_PRESENT] == 1
    np.testing.assert_allclose(obs[0, ADVICE_PROBABILITIES], [1, 0, 0, 0, 0, 0, 0])  # HOLD's share, renormalised
    assert obs[0, ADVICE_CONFIDENCE] == 1.0 and env.telemetry.answers == 1


def test_an_async_answer_with_nothing_left_allowed_is_dropped(synthetic_market, raw_inputs):
    env, worker, key, asked_flat = _asked_flat_then_bought(synthetic_market, raw_inputs)
    worker.answers[key] = (asked_flat, np.array([0, 0.6, 0.4, 0, 0, 0, 0]), 0.6)  # only entries
    obs, *_ = env.step(np.array([Action.HOLD]))
    assert obs[0, ADVICE_PRESENT] == 0 and not obs[0, ADVICE_PROBABILITIES].any() and env.telemetry.answers == 0


# -- the RL-only evaluation and the `good` decision ---------------------------------------------
@pytest.fixture(scope="module")
def split_frames():
    """Four synthetic sessions, two train and two validation, as the pipeline hands them to Phase 3."""
    import pandas as pd

    from hybrid_trader.features.bar_features import compute_bar_features
    from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
    from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars
    from hybrid_trader.pipelines.data_split.nodes import add_advisor_inputs, fit_feature_scaler, scale_features

    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=4, seed=5, start_date="2024-03-04"))
    result = ingest_bars(raw, CleaningConfig(), source="synthetic")
    bar_features = compute_bar_features(result.bars, result.sessions)
    days = np.sort(bar_features["session_date"].unique())
    day_splits = pd.DataFrame({"session_date": days, "split": ["train", "validation", "train", "validation"]})
    scaler = fit_feature_scaler(bar_features, day_splits, {"clip": 5.0})
    model_input = scale_features(bar_features, day_splits, scaler)
    return result.bars, model_input, add_advisor_inputs(bar_features, scaler)


NO_ADAPTER = {"enabled": False, "adapter_path": None}  # the advisor_adapter dataset with fine-tuning off


def _params(name: str) -> dict:
    from omegaconf import OmegaConf

    from tests.conftest import PROJECT_ROOT

    return OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / f"conf/base/parameters{name}.yml"))


def test_the_rl_only_evaluation_switches_the_advisor_off_and_decides_good(synthetic_market, raw_inputs,
                                                                          phase2_model, split_frames, monkeypatch):
    import dataclasses

    from hybrid_trader.advisor.cache import AdviceCache
    from hybrid_trader.agents.backtest import summarize
    from hybrid_trader.agents.phase3 import backtest_hybrid, make_advised_env
    from hybrid_trader.markets import CONTRACTS
    from hybrid_trader.pipelines.phase3 import nodes

    class LoadsScripted:  # the advisor the node loads: one that always leans SELL, answering at once
        @staticmethod
        def from_params(params, cache=None):
            advisor = ScriptedAdvisor(Action.SELL)
            advisor.close = lambda: None
            return advisor

    monkeypatch.setattr(nodes, "Advisor", LoadsScripted)
    hybrid = phase3_from_phase2(phase2_model, advised(synthetic_market, raw_inputs), llm_weight=0.9, n_steps=32,
                                batch_size=32, seed=2)
    environment, phase3_params = _params("")["environment"], _params("_phase3")["phase3"]
    clean_bars, model_input, bar_features = split_frames
    contract = CONTRACTS["NQ"]
    evaluation = nodes.evaluate_phase3_policy(hybrid, clean_bars, model_input, bar_features,
                                              dataclasses.asdict(contract), AdviceCache(), NO_ADAPTER, environment, {},
                                              phase3_params)
    assert hybrid.policy.llm_weight_override is None  # restored after the RL-only backtest

    # The RL part alone, computed another way: the same policy on environments that never ask.
    config = Phase3Config.from_params({**phase3_params, "use_advisor": False})
    never_asks = make_advised_env(clean_bars, model_input, bar_features, contract, environment, "validation", config,
                                  advisor=None, worker=None, n_envs=1, episode_mode="full_session", mode="cached")
    rl_only = summarize(backtest_hybrid(hybrid, never_asks))
    assert evaluation["validation_rl_only"] == rl_only and rl_only["sessions"] == 2
    hybrid_pnl = evaluation["overfitting_gap"]["validation_mean_net_pnl"]
    assert hybrid_pnl != rl_only["mean_net_pnl"]  # the advisor, at w = 0.9, changed the trades

    registered = []
    monkeypatch.setattr(nodes, "register_model", lambda model, **kwargs: registered.append(kwargs))
    for rl_pnl in (rl_only["mean_net_pnl"], hybrid_pnl - 1.0, hybrid_pnl, hybrid_pnl + 1.0):
        outcome = {**evaluation, "validation_rl_only": {**rl_only, "mean_net_pnl": rl_pnl}}
        nodes.register_phase3_policy(hybrid, feature_scaler={}, observation_layout={}, phase3_evaluation=outcome,
                                     clean_bars=clean_bars, model_input_features=model_input,
                                     market_spec=dataclasses.asdict(contract),
                                     environment_params=environment, phase3_params=phase3_params)
    assert [r["good"] for r in registered] == [hybrid_pnl > rl_only["mean_net_pnl"], True, False, False]
    assert {r["validation_mean_net_pnl"] for r in registered} == {hybrid_pnl}


# -- checkpoint and resume ------------------------------------------------------------------------
def test_a_learned_llm_weight_survives_checkpoint_and_resume(synthetic_market, raw_inputs, phase2_model, tmp_path):
    from sb3_contrib import MaskablePPO

    from hybrid_trader.agents.callbacks import latest_checkpoint
    from hybrid_trader.agents.phase3 import train_phase3

    ppo = dict(n_steps=32, batch_size=32, n_epochs=4, n_envs=2, total_timesteps=128, eval_every_steps=64,
               checkpoint_every_steps=64, seed=3, target_kl=None, learning_rate=1e-2, lr_schedule="constant")
    config = Phase3Config(ppo=PPOConfig(**ppo), adapter_warmup_steps=32, llm_weight=0.3, learn_llm_weight=True)

    def envs():
        evaluation = AdvisedVecEnv(TradingVecEnv(synthetic_market, EngineConfig(episode_mode="full_session"), n_envs=1,
                                                 phase=3), raw_inputs, ScriptedAdvisor(), QueryScheduleConfig())
        return advised(synthetic_market, raw_inputs, ScriptedAdvisor(), n_envs=2), evaluation

    work = tmp_path / "work"
    first, _ = train_phase3(config, phase2_model, *envs(), 1, work, progress_bar=False)
    learned = float(first.model.policy.llm_weight().detach())
    assert abs(learned - 0.3) > 1e-3  # w moved while training
    checkpoint, sidecar = latest_checkpoint(work / "checkpoints")
    assert sidecar["num_timesteps"] == 128
    saved = MaskablePPO.load(checkpoint, device="cpu").policy
    assert float(saved.llm_weight().detach()) == pytest.approx(learned, abs=1e-7)
    theta_state = first.model.policy.optimizer.state[first.model.policy.llm_weight_logit]

    # Resuming with nothing left to train gives back the checkpoint as it was: w and its Adam state.
    same, _ = train_phase3(config, phase2_model, *envs(), 1, work, resume=True, progress_bar=False)
    policy = same.model.policy
    assert same.resumed_from == checkpoint and same.model.num_timesteps == 128
    assert float(policy.llm_weight().detach()) == pytest.approx(learned, abs=1e-7)
    assert any(policy.llm_weight_logit is p for group in policy.optimizer.param_groups for p in group["params"])
    restored = policy.optimizer.state[policy.llm_weight_logit]
    assert restored["step"] == theta_state["step"] > 0
    torch.testing.assert_close(restored["exp_avg"], theta_state["exp_avg"])

    # Training on from there keeps learning w from its learned value.
    longer = Phase3Config(**{**config.__dict__, "ppo": PPOConfig(**{**ppo, "total_timesteps": 192})})
    resumed, _ = train_phase3(longer, phase2_model, *envs(), 1, work, resume=True, progress_bar=False)
    assert resumed.model.num_timesteps == 192
    assert resumed.model.policy.optimizer.state[resumed.model.policy.llm_weight_logit]["step"] > theta_state["step"]
    assert float(resumed.model.policy.llm_weight().detach()) != pytest.approx(learned, abs=1e-6)


def test_an_advisor_worker_stopped_by_force_is_not_a_clean_exit():
    from hybrid_trader.pipelines.phase3.nodes import _close

    class ClosedWorker:
        alive = False

        def __init__(self, forced_stop: bool) -> None:
            self.forced_stop = forced_stop

        def close(self) -> None:
            pass

    assert _close(None, ClosedWorker(forced_stop=False)) is True
    assert _close(None, ClosedWorker(forced_stop=True)) is False
