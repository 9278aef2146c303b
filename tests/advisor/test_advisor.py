"""The advisor on the tiny random model (fast) and the real default model (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybrid_trader.advisor.advisor import Advisor, AdvisorConfig
from hybrid_trader.advisor.backend import AdvisorUnavailable, BackendConfig, TransformersBackend, resolve_device
from hybrid_trader.advisor.cache import AdviceCache
from hybrid_trader.advisor.parsing import parse_answer
from hybrid_trader.advisor.prompts import PromptBuilder, PromptTemplate
from hybrid_trader.env.actions import Action
from tests.advisor.conftest import FLAT_MASK, LONG_MASK, mirrored, up_state


class CountingBackend:
    def __init__(self, inner, fail: bool = False):
        self.inner, self.fail, self.calls = inner, fail, 0
        self.identity = inner.identity

    def option_logprobs(self, *args):
        self.calls += 1
        if self.fail:
            raise RuntimeError("model exploded")
        return self.inner.option_logprobs(*args)


def test_two_pass_option_scores_equal_full_sequence_scoring(tiny_backend):
    prefix, suffixes, options = "Market note.", [" Up strongly today and", " Down"], [" BUY", " SELL", " HOLD"]
    got = tiny_backend.option_logprobs(prefix, suffixes, options)
    tok = tiny_backend.tokenizer
    for i, suffix in enumerate(suffixes):
        context = tok(prefix, add_special_tokens=False).input_ids + tok(suffix, add_special_tokens=False).input_ids
        for j, option in enumerate(options):
            answer = tok(option, add_special_tokens=False).input_ids
            with torch.inference_mode():
                logits = tiny_backend.model(torch.tensor([context + answer])).logits
            logprobs = torch.log_softmax(logits.float(), -1)[0]
            expected = sum(logprobs[len(context) - 1 + k, t].item() for k, t in enumerate(answer))
            assert got[i, j] == pytest.approx(expected, abs=1e-4)


def test_score_answers_are_distributions_over_the_allowed_actions(tiny_backend, builder):
    advisor = Advisor(tiny_backend, builder, AdvisorConfig())
    advice = advisor.advise([up_state(), up_state(position_side=1, unrealized_pnl=120.0)],
                            np.stack([FLAT_MASK, LONG_MASK]))
    assert advice.has_advice.all()
    np.testing.assert_allclose(advice.probabilities.sum(axis=1), 1.0)
    assert (advice.probabilities[0, 3:] == 0).all() and (advice.probabilities[1, [1, 2, 5]] == 0).all()
    assert (advice.probabilities[1, [Action.HOLD, 3, 4, Action.EXIT]] > 0).all()  # EXIT scored in a position
    np.testing.assert_array_equal(advice.confidence, advice.probabilities.max(axis=1))


def test_calibration_makes_the_content_free_prompt_uniform(tiny_backend, builder):
    advisor = Advisor(tiny_backend, builder, AdvisorConfig())
    options = (0, 1, 2)
    free = advisor._score(options, [builder.content_free_text(options)])[0]
    np.testing.assert_allclose(free[list(options)], 1 / 3)
    raw = Advisor(tiny_backend, builder, AdvisorConfig(calibrate=False))._score(options, [builder.content_free_text(options)])[0]
    assert not np.allclose(raw[list(options)], 1 / 3)  # the uncalibrated prior is not flat


def test_answer_sets_a_fine_tuned_adapter_was_trained_on_are_not_calibrated_again(tiny_backend, builder):
    # A fine-tuned advisor skips calibration for the flat account's answers only (its adapter learned them).
    flat, in_position = (0, 1, 2), (0, 3, 4, 6)
    tuned = Advisor(tiny_backend, builder, AdvisorConfig(uncalibrated_options=((2, 1, 0),)))
    plain = Advisor(tiny_backend, builder, AdvisorConfig(calibrate=False))
    calibrated = Advisor(tiny_backend, builder, AdvisorConfig())
    for options, reference in ((flat, plain), (in_position, calibrated)):
        text = builder.content_free_text(options)
        np.testing.assert_allclose(tuned._score(options, [text])[0], reference._score(options, [text])[0])
    # Their cache keys carry the method actually used, so the two kinds of answers never mix.
    assert tuned._key("x", flat) == plain._key("x", flat)
    assert tuned._key("x", in_position) == calibrated._key("x", in_position)


def test_cache_hits_skip_the_model_miss_on_a_new_template_and_survive_a_restart(tiny_backend, builder, tmp_path):
    path = tmp_path / "advice.parquet"
    counting = CountingBackend(tiny_backend)
    advisor = Advisor(counting, builder, AdvisorConfig(), AdviceCache(path))
    first = advisor.advise([up_state()], FLAT_MASK[None])
    calls = counting.calls
    second = advisor.advise([up_state(rsi14=66.0)], FLAT_MASK[None])  # same bucket, same prompt
    assert counting.calls == calls and second.cache_hit[0]
    only_hold = np.array([True, False, False, False, False, False, False])
    other_mask = advisor.advise([up_state()], only_hold[None])  # same text, other allowed actions
    assert not other_mask.cache_hit[0] and other_mask.probabilities[0].tolist() == [1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    advisor.close()

    restarted = Advisor(CountingBackend(tiny_backend), builder, AdvisorConfig(), AdviceCache(path))
    again = restarted.advise([up_state()], FLAT_MASK[None])
    assert again.cache_hit[0] and restarted.backend.calls == 0
    entry = restarted.cache.get(next(iter(restarted.cache._entries)))
    assert not entry[0].flags.writeable

    new_version = PromptBuilder(PromptTemplate(builder.template.version + "-next", builder.template.prefix, builder.template.state), builder.buckets)
    other = Advisor(CountingBackend(tiny_backend), new_version, AdvisorConfig(), AdviceCache(path))
    assert not other.advise([up_state()], FLAT_MASK[None]).cache_hit[0]


def test_a_raising_model_never_propagates_and_switches_off_after_k_failures(tiny_backend, builder):
    failing = CountingBackend(tiny_backend, fail=True)
    advisor = Advisor(failing, builder, AdvisorConfig(max_consecutive_failures=2))
    for k in range(3):
        advice = advisor.advise([up_state(rsi14=10.0 * k)], FLAT_MASK[None])
        assert not advice.has_advice.any() and np.isnan(advice.probabilities).all()
    assert advisor.stats.failures == 2 and advisor.stats.disabled
    assert failing.calls == 2  # off: no further model calls


def test_a_state_the_prompt_cannot_describe_gets_no_advice(tiny_backend, builder):
    advisor = Advisor(tiny_backend, builder, AdvisorConfig(), save_responses=True)
    advice = advisor.advise([up_state(rsi14=float("nan")), up_state()], np.stack([FLAT_MASK, FLAT_MASK]))
    assert advice.has_advice.tolist() == [False, True] and advisor.stats.bad_states == 1
    assert advisor.responses()["error"].tolist() == ["bad_state", ""]


def test_a_cached_answer_for_another_action_space_is_dropped_on_loading(tmp_path):
    import pandas as pd

    path = tmp_path / "c.parquet"
    pd.DataFrame({"key": ["six", "seven"], "probabilities": [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]],
                  "confidence": [1.0, 1.0]}).to_parquet(path)
    cache = AdviceCache(path)
    assert len(cache) == 1 and cache.get("six") is None and cache.get("seven")[0].tolist() == [0, 1, 0, 0, 0, 0, 0]


def test_an_empty_cache_file_loads_again(tmp_path):
    from hybrid_trader.datasets import AdviceCacheDataset

    dataset = AdviceCacheDataset(filepath=str(tmp_path / "c.parquet"))
    dataset.save(AdviceCache())
    assert len(dataset.load()) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BUY | 0.8 | strong uptrend", (1, 0.8)),
        ("  sell|0.35|fading the move  \nmore text", (2, 0.35)),
        ("HOLD | 1 | nothing to do", (0, 1.0)),
        ("BREAKEVEN | .5 | lock it", (3, 0.5)),
        ("untrail | 0.4 | let it run", (5, 0.4)),
        ("EXIT | 0.65 | momentum faded", (6, 0.65)),
        ("exit|1|done", (6, 1.0)),
        ("BUY", None),
        ("BUY | high | trend", None),
        ("BUY | 1.5 | trend", None),
        ("BUY | 0.8 |", None),
        ("MAYBE | 0.8 | unsure", None),
        ("I think BUY | 0.8 | trend", None),
        ("", None),
        ("0.8 | BUY | trend", None),
    ],
)
def test_strict_parsing(text, expected):
    parsed = parse_answer(text)
    assert (None if parsed is None else (parsed.action, parsed.confidence)) == expected


def test_parsing_rejects_an_action_the_mask_forbids():
    assert parse_answer("BUY | 0.9 | go", allowed=(0, 3, 4)) is None
    assert parse_answer("EXIT | 0.9 | out", allowed=(0, 1, 2)) is None  # flat: nothing to exit
    assert parse_answer("EXIT | 0.9 | out", allowed=(0, 3, 4, 6)).action == Action.EXIT


def test_every_action_has_its_own_answer_word_and_the_prompt_names_exit(advisor_params):
    from hybrid_trader.advisor.prompts import ANSWER_WORDS

    assert [ANSWER_WORDS[a] for a in Action] == ["HOLD", "BUY", "SELL", "BREAKEVEN", "TRAIL", "UNTRAIL", "EXIT"]
    # A template's {allowed} field lists the words of the actions the mask allows.
    in_position = tuple(int(a) for a in np.flatnonzero(LONG_MASK))
    text = PromptBuilder(PromptTemplate("t", "", "{allowed}")).state_text(up_state(position_side=1), in_position)
    assert text == "HOLD, BREAKEVEN, TRAIL, EXIT"
    # The configured prompts tell the model which words it may answer in a position.
    for prefix in (advisor_params["prompt"]["prefix"], advisor_params["prompt"]["generate_prefix"]):
        assert "In a position answer HOLD, BREAKEVEN, TRAIL, UNTRAIL or EXIT." in prefix


def test_missing_model_is_reported_before_training(tmp_path):
    with pytest.raises(AdvisorUnavailable, match="does not exist.*model_path"):
        TransformersBackend.load(BackendConfig(model_path=str(tmp_path / "nope")))


def test_real_default_model_answers_offline(real_backend, builder):
    """SmolLM2-135M-Instruct from the wheel: valid calibrated answers over the allowed actions."""
    advisor = Advisor(real_backend, builder, AdvisorConfig())
    states = [up_state(), mirrored(up_state()), up_state(position_side=1, unrealized_pnl=120.0)]
    advice = advisor.advise(states, np.stack([FLAT_MASK, FLAT_MASK, LONG_MASK]))
    assert advice.has_advice.all()
    np.testing.assert_allclose(advice.probabilities.sum(axis=1), 1.0)
    assert (advice.probabilities[:2, 3:] == 0).all() and (advice.probabilities[2, [1, 2, 5]] == 0).all()
    assert real_backend.identity.startswith("SmolLM2-135M-Instruct")


# Eight hand-made up-market states, each a distinct v4 prompt (time slot, move from the open,
# volatility for the time, trend strength); their mirrors differ only in the move's side.
UP_STATES = [up_state(minutes_since_open=m, session_move_atr=move, session_vol_ratio=vol, adx14=adx)
             for m, move, vol, adx in [
                 (0.5, 6.0, 1.0, 35.0), (0.1, 2.0, 1.0, 35.0), (0.9, 18.0, 1.0, 35.0), (0.5, 6.0, 1.5, 35.0),
                 (0.5, 6.0, 0.5, 20.0), (0.3, 10.0, 1.0, 20.0), (0.7, 3.0, 1.3, 35.0), (0.2, 20.0, 0.7, 20.0)]]


def test_real_default_model_leans_toward_buy_in_up_markets_more_than_in_their_mirror(real_backend, llm_cache_dir,
                                                                                      builder):
    """A measured lean of the default model, not a trading skill (docs/advisor.md: 50% over 16 pairs
    from data, prompt v2). On these eight pairs (CPU, float32, prompt v4, where the side lives only in
    the session's move from the open) the calibrated P(BUY) - P(SELL) of the up state exceeds its
    mirror's in every pair, by 0.026 to 0.045 (mean 0.037; v3 with trend, RSI, momentum and VWAP:
    0.014 to 0.023, mean 0.019). Swapped BUY/SELL answer words flip the sign of every difference;
    prompts that lose the sign make them zero."""
    backend = real_backend if real_backend.device == "cpu" else TransformersBackend.load(
        BackendConfig(cache_dir=str(llm_cache_dir), device="cpu", dtype="float32", torch_threads=1))
    states = UP_STATES + [mirrored(s) for s in UP_STATES]
    advice = Advisor(backend, builder, AdvisorConfig()).advise(states, np.repeat(FLAT_MASK[None], len(states), axis=0))
    up_prompts, down_prompts = advice.prompts[:8], advice.prompts[8:]
    assert len(set(up_prompts)) == 8 and all(", session up " in p for p in up_prompts)
    assert [p.replace(", session down ", ", session up ") for p in down_prompts] == up_prompts
    edge = advice.probabilities[:, Action.BUY] - advice.probabilities[:, Action.SELL]
    lean = edge[:8] - edge[8:]
    print(f"\nreal model: up-minus-mirror BUY-SELL edge {np.round(lean, 4).tolist()}, mean {lean.mean():.4f}")
    assert (lean > 0.01).all() and lean.mean() > 0.02


def test_device_resolution_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto", "auto") == ("cpu", torch.float32)
    with pytest.raises(AdvisorUnavailable, match="no CUDA device"):
        resolve_device("cuda", "auto")


def test_saved_responses_record_every_answer(tiny_backend, builder):
    advisor = Advisor(tiny_backend, builder, AdvisorConfig(), save_responses=True)
    advisor.advise([up_state(), mirrored(up_state())], np.stack([FLAT_MASK, FLAT_MASK]), env_ids=[3, 7])
    advisor.advise([up_state()], FLAT_MASK[None], env_ids=[3])
    log = advisor.responses()
    assert len(log) == 3 and log["env"].tolist() == [3, 7, 3]
    assert log["cache_hit"].tolist() == [False, False, True]
    assert (log["action"].isin([0, 1, 2])).all() and (log["error"] == "").all()
    np.testing.assert_allclose(log[[c for c in log if c.startswith("p_")]].sum(axis=1), 1.0)


def test_async_worker_serves_fresh_answers_and_joins_on_close(tiny_backend, builder):
    import time

    from hybrid_trader.advisor.worker import AsyncAdvisor

    worker = AsyncAdvisor(Advisor(tiny_backend, builder, AdvisorConfig()))
    assert worker.submit([up_state(), mirrored(up_state())], np.stack([FLAT_MASK, FLAT_MASK]), [0, 1], step=10)
    deadline = time.time() + 30
    while True:
        probabilities, confidence, age = worker.latest([0, 1, 2], step=12, max_age=5)
        if not np.isnan(confidence[:2]).any() or time.time() > deadline:
            break
        time.sleep(0.01)
    assert age.tolist() == [2, 2, -1] and np.isnan(confidence[2])  # env 2 never asked
    np.testing.assert_allclose(probabilities[:2].sum(axis=1), 1.0)
    _, stale, _ = worker.latest([0], step=20, max_age=5)
    assert np.isnan(stale).all()  # too old: no advice rather than stale advice
    worker.close()
    assert not worker._thread.is_alive()
    worker.close()  # twice is fine


def test_prescoring_scores_distinct_flat_prompts_once(tiny_backend, builder, synthetic_frames, tmp_path):
    from hybrid_trader.advisor.prescore import flat_states, prescore

    bars, _ = synthetic_frames
    from hybrid_trader.advisor.prescore import advisor_bar_features
    from hybrid_trader.features.bar_features import compute_bar_features
    from hybrid_trader.features.scaling import FeatureScaler
    from hybrid_trader.market_data.calendar import sessions_between

    sessions = sessions_between(bars["session_date"].min().date(), bars["session_date"].max().date())
    sessions["session_date"] = sessions["session_date"].astype("datetime64[ns]")
    raw = compute_bar_features(bars, sessions)
    features = advisor_bar_features(raw, FeatureScaler.fit(raw))  # the prompt reads the raw session_vol_ratio
    states = flat_states(features, 2_500.0)
    assert len(states) == int(features["valid_for_trading"].sum())
    assert {s["position_side"] for s in states} == {0} and {s["drawdown_buffer"] for s in states} == {2_500.0}

    cache = AdviceCache(tmp_path / "c.parquet")
    first = prescore(Advisor(tiny_backend, builder, AdvisorConfig(), cache), states, batch_size=8, max_prompts=10)
    assert first["scored"] == 10 and first["already_cached"] == 0 and first["distinct_prompts"] > 10
    again = prescore(Advisor(tiny_backend, builder, AdvisorConfig(), AdviceCache(tmp_path / "c.parquet")),
                     states, batch_size=8, max_prompts=10)
    assert again["already_cached"] == 10 and again["scored"] == 10  # extends the cache, never repeats
    # Flat accounts: a distribution over every action, nothing on BREAKEVEN, TRAIL, UNTRAIL or EXIT.
    entries = [probabilities for probabilities, _ in cache._entries.values()]
    assert len(entries) == 10 and all(p.shape == (len(Action),) for p in entries)
    assert all(p[3:].sum() == 0 and p[:3].sum() == pytest.approx(1.0) for p in entries)


def test_generate_mode_counts_unparseable_answers_as_abstentions(tiny_backend, builder):
    advisor = Advisor(tiny_backend, builder, AdvisorConfig(method="generate", max_new_tokens=5, do_sample=False))
    advice = advisor.advise([up_state(), mirrored(up_state())], np.stack([FLAT_MASK, FLAT_MASK]))
    # A random model never writes "ACTION | CONFIDENCE | REASON": no advice, counted, not HOLD.
    assert not advice.has_advice.any() and advisor.stats.abstentions == 2
    assert advisor.stats.failures == 0


def test_generate_mode_turns_a_parsed_answer_into_a_distribution(builder):
    class Scripted:
        identity = "scripted"

        def generate(self, prompts, **kwargs):
            return ["SELL | 0.7 | breakdown"] * len(prompts)

    advice = Advisor(Scripted(), builder, AdvisorConfig(method="generate")).advise([up_state()], FLAT_MASK[None])
    np.testing.assert_allclose(advice.probabilities[0], [0.15, 0.15, 0.7, 0, 0, 0, 0])
    assert advice.confidence[0] == pytest.approx(0.7)


def test_generate_mode_can_answer_exit_in_a_position(builder):
    class Scripted:
        identity = "scripted"

        def generate(self, prompts, **kwargs):
            return ["EXIT | 0.4 | stalled"] * len(prompts)

    state = up_state(position_side=1, unrealized_pnl=120.0)
    advice = Advisor(Scripted(), builder, AdvisorConfig(method="generate")).advise([state], LONG_MASK[None])
    # EXIT gets its stated 0.4; HOLD, BREAKEVEN and TRAIL share the remaining 0.6.
    np.testing.assert_allclose(advice.probabilities[0], [0.2, 0, 0, 0.2, 0.2, 0, 0.4])
    assert advice.confidence[0] == pytest.approx(0.4)
    flat = Advisor(Scripted(), builder, AdvisorConfig(method="generate"))
    assert not flat.advise([up_state()], FLAT_MASK[None]).has_advice[0]  # EXIT when flat: an abstention
    assert flat.stats.abstentions == 1


def test_an_edited_prefix_misses_even_under_the_same_version(tiny_backend, builder):
    cache = AdviceCache()
    Advisor(tiny_backend, builder, AdvisorConfig(), cache).advise([up_state()], FLAT_MASK[None])
    edited = PromptBuilder(PromptTemplate(builder.template.version, builder.template.prefix + " Be brief.",
                                          builder.template.state), builder.buckets)
    assert not Advisor(tiny_backend, edited, AdvisorConfig(), cache).advise([up_state()], FLAT_MASK[None]).cache_hit[0]


def test_a_local_model_with_a_lora_adapter_applies_it_in_eval_mode(tiny_backend, builder, tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "fin-lora"
    tiny_backend.model.save_pretrained(base_dir)
    tiny_backend.tokenizer.save_pretrained(base_dir)
    lora = get_peft_model(tiny_backend.model.__class__.from_pretrained(base_dir),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.5))
    # A fresh LoRA has B = 0 and changes nothing: give it weights, as a fine-tuned one has.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in lora.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator))
    lora.save_pretrained(adapter_dir)

    base = TransformersBackend.load(BackendConfig(model_path=str(base_dir)))
    backend = TransformersBackend.load(BackendConfig(model_path=str(base_dir), adapter_path=str(adapter_dir)))
    assert "+fin-lora:" in backend.identity and backend.identity.startswith(base.identity)
    assert not backend.model.training and not any(m.training for m in backend.model.modules())

    prefix, suffixes, options = "Note.", [" Up", " Down strongly"], [" BUY", " SELL", " HOLD"]
    adapted = backend.option_logprobs(prefix, suffixes, options)
    assert np.isfinite(adapted).all()
    np.testing.assert_array_equal(backend.option_logprobs(prefix, suffixes, options), adapted)  # no dropout
    expected = TransformersBackend(lora, tiny_backend.tokenizer, "in-memory", "cpu").option_logprobs(
        prefix, suffixes, options)
    np.testing.assert_allclose(adapted, expected, atol=1e-5)  # the saved adapter, applied
    assert np.abs(adapted - base.option_logprobs(prefix, suffixes, options)).max() > 0.1

    states, masks = [up_state(), mirrored(up_state())], np.stack([FLAT_MASK, FLAT_MASK])
    with_adapter = Advisor(backend, builder, AdvisorConfig()).advise(states, masks).probabilities
    without = Advisor(base, builder, AdvisorConfig()).advise(states, masks).probabilities
    assert np.abs(with_adapter - without).max() > 1e-3  # calibrated answers of a random model: near uniform
