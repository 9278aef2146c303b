"""The advisor's one interface: ``advise(states, masks) -> Advice``.

``score`` (default): for each query, the log-likelihood of every allowed
action's answer word after the prompt, softmaxed over the allowed actions.
With ``calibrate`` (default) this is *contextual calibration* (Zhao, Wallace,
Feng, Klein & Singh, "Calibrate Before Use: Improving Few-Shot Performance of
Language Models", ICML 2021): divide by the distribution the model gives to
the same prompt with every value replaced by ``N/A`` and renormalize, which
removes the model's prior preference for some answer words.
``generate``: free text in ``ACTION | CONFIDENCE | REASON``, parsed strictly;
the named action gets the stated confidence and the other allowed actions
share the rest equally; an unparseable answer is an abstention.

*Confidence* is the largest probability of the returned distribution.
Queries with no advice (abstention, failure, advisor switched off) have
``has_advice = False`` and NaN probabilities: callers must treat them as
"no opinion", never as agreement.

Failures (an exception from the model) are counted; after
``max_consecutive_failures`` in a row the advisor switches itself off for the
run with a warning. Nothing the model does propagates to the caller.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hybrid_trader.advisor.backend import BackendConfig, TransformersBackend
from hybrid_trader.advisor.cache import AdviceCache, advice_key
from hybrid_trader.advisor.parsing import parse_answer
from hybrid_trader.advisor.prompts import ANSWER_WORDS, PromptBuilder
from hybrid_trader.env.actions import N_ACTIONS, Action

__all__ = ["AdvisorConfig", "Advice", "AdvisorStats", "Advisor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdvisorConfig:
    """How to ask (``advisor`` parameters, without the model and prompt)."""

    method: str = "score"
    calibrate: bool = True
    # Answer sets a fine-tuned adapter was trained to answer calibrated (e.g. the flat account's
    # HOLD, BUY, SELL): contextual calibration would undo the prior it learned, so it is skipped there.
    uncalibrated_options: tuple[tuple[int, ...], ...] = ()
    temperature: float = 0.7
    do_sample: bool = True
    max_new_tokens: int = 40
    max_consecutive_failures: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "uncalibrated_options",
                           tuple(tuple(sorted(int(a) for a in options)) for options in self.uncalibrated_options))
        if self.method not in ("score", "generate"):
            raise ValueError("advisor.method must be 'score' or 'generate'")
        if self.max_consecutive_failures < 1:
            raise ValueError("advisor.max_consecutive_failures must be >= 1")

    @property
    def tag(self) -> str:
        """The method as it enters cache keys."""
        if self.method == "score":
            return "score+calibrated" if self.calibrate else "score"
        return f"generate:t={self.temperature}:s={self.do_sample}:n={self.max_new_tokens}"


@dataclass
class Advice:
    """One ``advise`` call's answers, row by row."""

    probabilities: np.ndarray  # (n, N_ACTIONS); 0 for disallowed actions; NaN rows without advice
    confidence: np.ndarray  # (n,); NaN without advice
    has_advice: np.ndarray  # (n,) bool
    cache_hit: np.ndarray  # (n,) bool
    prompts: list[str | None]  # None where the state could not be described
    latency_ms: float  # wall time of the call


@dataclass
class AdvisorStats:
    """Counters since the advisor was created."""

    queries: int = 0
    cache_hits: int = 0
    model_queries: int = 0
    failures: int = 0
    abstentions: int = 0
    bad_states: int = 0
    model_ms: float = 0.0
    disabled: bool = False
    consecutive_failures: int = field(default=0, repr=False)


class Advisor:
    """Turns states and masks into distributions over the actions, with a cache."""

    def __init__(self, backend: Any, builder: PromptBuilder, config: AdvisorConfig,
                 cache: AdviceCache | None = None, save_responses: bool = False) -> None:
        self.backend, self.builder, self.config = backend, builder, config
        self.cache = cache if cache is not None else AdviceCache()
        self.stats = AdvisorStats()
        self.save_responses = save_responses
        self._responses: list[dict[str, Any]] = []
        self._content_free: dict[tuple[int, ...], np.ndarray] = {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], cache: AdviceCache | None = None) -> "Advisor":
        """Build from the ``advisor`` parameters; raises ``AdvisorUnavailable`` before any training."""
        builder = PromptBuilder.from_params(params["prompt"])
        config = AdvisorConfig(method=params["method"], calibrate=params["calibrate"],
                               uncalibrated_options=tuple(params.get("uncalibrated_options") or ()),
                               max_consecutive_failures=params["max_consecutive_failures"], **params["generate"])
        backend = TransformersBackend.load(BackendConfig(**params["model"]))
        return cls(backend, builder, config, cache, save_responses=bool(params.get("save_llm_responses", False)))

    def close(self) -> None:
        """Persist the cache."""
        self.cache.flush()

    def is_cached(self, state_text: str, options: tuple[int, ...]) -> bool:
        """Whether the answer to this prompt text with these allowed actions is in the cache."""
        return self.cache.get(self._key(state_text, options)) is not None

    def _key(self, state_text: str, options: tuple[int, ...]) -> str:
        # The whole prompt (prefix included) and the allowed actions enter the key: an edited
        # template or another mask can never be served someone else's answer.
        template = self.builder.template
        prefix = template.generate_prefix or template.prefix if self.config.method == "generate" else template.prefix
        allowed = ",".join(str(a) for a in options)
        return advice_key(self.backend.identity, template.version, self._tag(options), f"{prefix}{state_text}|{allowed}")

    def _calibrated(self, options: tuple[int, ...]) -> bool:
        return self.config.calibrate and tuple(sorted(options)) not in self.config.uncalibrated_options

    def _tag(self, options: tuple[int, ...]) -> str:
        """The method as it enters this answer set's cache keys."""
        if self.config.method == "score" and not self._calibrated(options):
            return "score"
        return self.config.tag

    # -------------------------------------------------------------------------
    def responses(self) -> pd.DataFrame:
        """Every answer since creation (``save_responses`` on): ``time``, ``env``, ``prompt_hash``,
        ``p_<action>`` (one per action), ``action`` (the most probable, -1 without advice),
        ``confidence``, ``latency_ms`` (the call's wall time), ``cache_hit`` and ``error``
        (``failure``, ``abstention``, ``disabled``, ``queued`` or empty)."""
        return pd.DataFrame(self._responses)

    def advise(self, states: Sequence[Mapping[str, Any]], masks: np.ndarray,
               env_ids: Sequence[int] | None = None, use_model: bool = True) -> Advice:
        """Answers for ``states`` under their ``masks`` (one row per state).

        With ``use_model=False`` only cached answers are returned; a cache miss gets no
        advice here (its row has a prompt but no cache hit) and is recorded as ``queued``:
        the caller sends it to the model another way (e.g. :class:`AsyncAdvisor`).
        """
        start = time.perf_counter()
        failures_before, abstentions_before = self.stats.failures, self.stats.abstentions
        n = len(states)
        masks = np.asarray(masks, dtype=bool).reshape(n, N_ACTIONS)
        probabilities = np.full((n, N_ACTIONS), np.nan)
        confidence = np.full(n, np.nan)
        hit = np.zeros(n, dtype=bool)
        allowed = [tuple(int(a) for a in np.flatnonzero(m)) for m in masks]
        prompts = [self._render(s, a) for s, a in zip(states, allowed)]
        keys = [self._key(p, a) if p is not None else "" for p, a in zip(prompts, allowed)]
        self.stats.queries += n
        misses: dict[tuple[int, ...], list[int]] = {}
        for i, key in enumerate(keys):
            if prompts[i] is None:  # a state the prompt cannot describe gets no advice
                continue
            cached = self.cache.get(key)
            if cached is not None:
                probabilities[i], confidence[i], hit[i] = cached[0], cached[1], True
            else:
                misses.setdefault(allowed[i], []).append(i)
        self.stats.cache_hits += int(hit.sum())
        if misses and not self.stats.disabled and use_model:
            for options, rows in misses.items():
                if self.stats.disabled:  # switched off by a failure earlier in this call
                    break
                answered = self._ask(options, [prompts[i] for i in rows])
                for i, answer in zip(rows, answered):
                    if answer is not None:
                        probabilities[i], confidence[i] = answer, float(np.max(answer))
                        self.cache.put(keys[i], answer, confidence[i])
        has_advice = ~np.isnan(confidence)
        latency = (time.perf_counter() - start) * 1e3
        if self.save_responses:
            if not use_model:
                reason = "queued"
            elif self.stats.disabled:
                reason = "disabled"
            elif self.stats.failures > failures_before:
                reason = "failure"
            else:
                reason = "abstention" if self.stats.abstentions > abstentions_before else ""
            now = time.time()
            for i in range(n):
                record = {"time": now, "env": int(env_ids[i]) if env_ids is not None else i,
                          "prompt_hash": keys[i][:16]}
                reason_i = reason if prompts[i] is not None else "bad_state"
                record.update({f"p_{Action(a).name.lower()}": float(probabilities[i, a]) for a in range(N_ACTIONS)})
                record.update(action=int(np.argmax(probabilities[i])) if has_advice[i] else -1,
                              confidence=float(confidence[i]), latency_ms=latency, cache_hit=bool(hit[i]),
                              error="" if has_advice[i] else reason_i)
                self._responses.append(record)
        return Advice(probabilities, confidence, has_advice, hit, prompts, latency)

    def distributions(self, texts: Sequence[str], options: tuple[int, ...], batch_size: int = 16) -> np.ndarray:
        """``(len(texts), N_ACTIONS)`` answers to prompt state texts (as :meth:`PromptBuilder.state_text`
        writes them) with the same allowed ``options``: from the cache, the rest from the model in
        batches of ``batch_size`` (and then cached). NaN rows where the model gave no advice."""
        options = tuple(int(a) for a in options)
        out = np.full((len(texts), N_ACTIONS), np.nan)
        keys = [self._key(t, options) for t in texts]
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            cached = self.cache.get(key)
            if cached is not None:
                out[i] = cached[0]
            else:
                todo.setdefault(key, []).append(i)
        pending = list(todo.items())
        for start in range(0, len(pending), batch_size):
            chunk = pending[start: start + batch_size]
            if self.stats.disabled:
                break
            for (key, rows), answer in zip(chunk, self._ask(options, [texts[rows[0]] for _, rows in chunk])):
                if answer is not None:
                    self.cache.put(key, answer, float(np.max(answer)))
                    out[rows] = answer
        return out

    def _render(self, state: Mapping[str, Any], options: tuple[int, ...]) -> str | None:
        try:
            return self.builder.state_text(state, options)
        except (KeyError, ValueError, TypeError, OverflowError) as error:
            self.stats.bad_states += 1
            logger.warning("Advisor cannot describe a state (%s): no advice for it", error)
            return None

    def _ask(self, options: tuple[int, ...], texts: list[str]) -> list[np.ndarray | None]:
        """Distributions for ``texts`` (all with the same allowed ``options``); ``None`` = no advice."""
        began = time.perf_counter()
        try:
            if self.config.method == "score":
                result: list[np.ndarray | None] = list(self._score(options, texts))
            else:
                result = self._generate(options, texts)
            self.stats.consecutive_failures = 0
        except Exception as error:  # the model must never take training down
            self.stats.failures += 1
            self.stats.consecutive_failures += 1
            logger.warning("Advisor failure %d (%s): %s", self.stats.failures, type(error).__name__, error)
            if self.stats.consecutive_failures >= self.config.max_consecutive_failures:
                self.stats.disabled = True
                logger.error("The advisor failed %d times in a row and is OFF for the rest of this run",
                             self.stats.consecutive_failures)
            result = [None] * len(texts)
        self.stats.model_queries += len(texts)
        self.stats.model_ms += (time.perf_counter() - began) * 1e3
        return result

    def _distribution(self, options: tuple[int, ...], values: np.ndarray) -> np.ndarray:
        full = np.zeros(N_ACTIONS)
        full[list(options)] = values
        return full

    def _score(self, options: tuple[int, ...], texts: list[str]) -> list[np.ndarray]:
        # The prompt ends with the assistant turn's newline: answers are bare words.
        words = [ANSWER_WORDS[Action(a)] for a in options]
        prefix = self.builder.template.prefix
        logprobs = self.backend.option_logprobs(prefix, texts, words)
        probs = _softmax(logprobs)
        if self._calibrated(options):
            if options not in self._content_free:
                free = self.backend.option_logprobs(prefix, [self.builder.content_free_text(options)], words)
                self._content_free[options] = _softmax(free)[0]
            probs = probs / self._content_free[options]
            probs /= probs.sum(axis=1, keepdims=True)
        return [self._distribution(options, row) for row in probs]

    def _generate(self, options: tuple[int, ...], texts: list[str]) -> list[np.ndarray | None]:
        prefix = self.builder.template.generate_prefix or self.builder.template.prefix
        outputs = self.backend.generate([prefix + t for t in texts], max_new_tokens=self.config.max_new_tokens,
                                        temperature=self.config.temperature, do_sample=self.config.do_sample)
        result: list[np.ndarray | None] = []
        for text in outputs:
            parsed = parse_answer(text, options)
            if parsed is None:
                self.stats.abstentions += 1
                result.append(None)
                continue
            rest = [a for a in options if a != parsed.action]
            values = np.array([parsed.confidence if a == parsed.action else
                               (1 - parsed.confidence) / len(rest) for a in options])
            if not rest:
                values = np.ones(1)
            result.append(self._distribution(options, values / values.sum()))
        return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
