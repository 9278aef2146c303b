"""The hybrid policy: the RL distribution fused with the advisor's opinion, inside the policy.

The hybrid observation is the 261 columns plus the advisor's latest opinion
(:data:`~hybrid_trader.features.registry.ADVICE_COLUMNS`: one probability per
action, confidence, age, present). The RL part (adapter, Phase 2 networks) reads the
261 columns (all 271 in the ``observation`` mode); the action distribution is

    pi = (1 - w_eff * present) * pi_RL + w_eff * present * pi_LLM,

then the action masks are applied (masked actions get probability 0 and the
rest is renormalised). PPO samples from ``pi`` and stores ``log pi(a)``; the
same observation gives the same ``pi`` when the update re-evaluates it, so PPO
stays on-policy. Without advice (``present`` 0) or with ``w_eff`` 0, ``pi`` is
exactly ``pi_RL``.

``w`` is ``llm_weight``: fixed, or learned (``learn_llm_weight``) as
``sigmoid(theta)`` with ``theta`` in the optimizer from the start. The fusion
mode (``fusion``, :data:`FUSION_MODES`) turns it into the row's ``w_eff``:

* ``fixed``: ``w_eff = w``.
* ``confidence``: ``w_eff = w * clamp((c - 1/k) / (1 - 1/k), 0, 1)`` (:func:`confidence_gate`),
  ``c`` the opinion's confidence (its top probability), ``k`` the number of answers it could
  choose from: the allowed actions when the call has masks (PPO's always do), else the actions
  the opinion gives a nonzero probability; ``k <= 1`` gives 0. A uniform opinion has no weight.
* ``learned_gate``: ``w_eff = sigmoid(g(latent_pi, advice))``, ``g`` a linear layer over the
  actor's latent and the 10 advice columns, zero weights and bias ``logit(w)`` at init (so
  ``w_eff = w`` there; ``w`` must be > 0), trained by the PPO loss through ``log pi``.
* ``observation``: ``w_eff = 0``; the adapter reads the advice columns too (zero weights on
  them at init, so the policy starts as the Phase 2 policy).

``llm_weight_override`` (not saved) replaces ``w_eff`` in every mode; 0 gives ``pi_RL``
exactly, and in the ``observation`` mode 0 also hides the advice columns from the
adapters (the RL part alone sees no advice at all).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

from hybrid_trader.env.actions import N_ACTIONS
from hybrid_trader.features.registry import ADVICE_COLUMNS, PHASE3_DIM

__all__ = ["FusedMaskablePolicy", "fuse", "confidence_gate", "validate_fusion", "FUSION_MODES",
           "ADVICE_PROBABILITIES", "ADVICE_CONFIDENCE", "ADVICE_AGE", "ADVICE_PRESENT"]

ADVICE_PROBABILITIES = slice(PHASE3_DIM, PHASE3_DIM + N_ACTIONS)
ADVICE_CONFIDENCE, ADVICE_AGE, ADVICE_PRESENT = (c.index for c in ADVICE_COLUMNS[N_ACTIONS:])
ADVICE = slice(PHASE3_DIM, PHASE3_DIM + len(ADVICE_COLUMNS))  # every advice column

FUSION_MODES = ("fixed", "confidence", "learned_gate", "observation")


def validate_fusion(fusion: str, llm_weight: float, learn_llm_weight: bool) -> None:
    """Refuse an unknown mode, a weight outside [0, 1), and settings a mode cannot honour."""
    if fusion not in FUSION_MODES:
        raise ValueError(f"phase3.fusion must be one of {', '.join(FUSION_MODES)} (got {fusion!r})")
    if not 0.0 <= llm_weight < 1.0:
        raise ValueError("phase3.llm_weight must be in [0, 1)")
    if fusion == "learned_gate" and llm_weight <= 0.0:
        raise ValueError("phase3.fusion learned_gate starts its gate at phase3.llm_weight, which must be > 0 "
                         "(sigmoid never reaches 0)")
    if learn_llm_weight and fusion in ("learned_gate", "observation"):
        raise ValueError(f"phase3.learn_llm_weight needs a scalar w, which phase3.fusion {fusion} does not use "
                         "(use fixed or confidence)")


def fuse(rl_logits: torch.Tensor, advice: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Log of ``(1 - weight) * softmax(rl_logits) + weight * advice`` (unmasked), row by row.

    Rows with ``weight`` 0 return ``log_softmax(rl_logits)`` exactly.
    """
    rl_log = torch.log_softmax(rl_logits, dim=-1)
    weight = weight.reshape(-1, 1)
    mixed = torch.log(((1 - weight) * rl_log.exp() + weight * advice).clamp_min(1e-12))
    return torch.where(weight > 0, mixed, rl_log)


def confidence_gate(obs: torch.Tensor, action_masks: Any = None) -> torch.Tensor:
    """``clamp((c - 1/k) / (1 - 1/k), 0, 1)`` per row: the opinion's confidence ``c`` above a
    uniform choice among ``k`` answers; 0 when ``k <= 1`` (nothing to choose) or without advice.

    ``k`` is the number of allowed actions under ``action_masks``; without masks, the number of
    actions the opinion gives a nonzero probability (the same, except that a certain opinion,
    one-hot, would count as having had no choice).
    """
    if action_masks is not None:
        allowed = torch.as_tensor(action_masks, device=obs.device).reshape(-1, N_ACTIONS).bool()
    else:
        allowed = obs[:, ADVICE_PROBABILITIES] > 0
    k = allowed.sum(dim=-1).to(obs.dtype)
    uniform = 1.0 / k.clamp_min(2.0)  # k <= 1 rows are set to 0 below; this only avoids dividing by 0
    gate = ((obs[:, ADVICE_CONFIDENCE] - uniform) / (1.0 - uniform)).clamp(0.0, 1.0)
    return torch.where(k > 1, gate, torch.zeros_like(gate))


class FusedMaskablePolicy(MaskableActorCriticPolicy):
    """MaskablePPO's actor-critic with the advisor fused into its action distribution."""

    def __init__(self, *args: Any, llm_weight: float = 0.2, learn_llm_weight: bool = False, fusion: str = "fixed",
                 **kwargs: Any) -> None:
        validate_fusion(fusion, llm_weight, learn_llm_weight)
        self._initial_llm_weight = float(llm_weight)
        self.learn_llm_weight = bool(learn_llm_weight)
        self.fusion = fusion
        self.llm_weight_override: float | None = None  # e.g. 0 for an RL-only evaluation; not saved
        self._weight_sum, self._weight_rows = 0.0, 0.0  # w_eff over the advised rows acted on since last read
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        # Created before the optimizer (built by super()._build) so that a learned weight is in it.
        value = torch.tensor(self._initial_llm_weight, dtype=torch.float32)
        if self.learn_llm_weight:
            self.llm_weight_logit = nn.Parameter(torch.logit(value.clamp(1e-4, 1 - 1e-4)))
        else:
            self.register_buffer("llm_weight_fixed", value)
        super()._build(lr_schedule)

    def _build_mlp_extractor(self) -> None:
        # The gate reads the actor's latent, whose size is known only once the extractor exists;
        # super()._build calls this before it builds the optimizer, so the gate is in it. Not in
        # SB3's orthogonal initialisation (which covers only its own modules): it stays as set here.
        super()._build_mlp_extractor()
        if self.fusion == "learned_gate":
            self.llm_gate = nn.Linear(self.mlp_extractor.latent_dim_pi + len(ADVICE_COLUMNS), 1)
            with torch.no_grad():
                self.llm_gate.weight.zero_()
                self.llm_gate.bias.fill_(float(torch.logit(torch.tensor(self._initial_llm_weight))))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(llm_weight=self._initial_llm_weight, learn_llm_weight=self.learn_llm_weight, fusion=self.fusion)
        return data

    def llm_weight(self) -> torch.Tensor:
        """The current ``w`` (the override, if set)."""
        if self.llm_weight_override is not None:
            return torch.tensor(float(self.llm_weight_override))
        return torch.sigmoid(self.llm_weight_logit) if self.learn_llm_weight else self.llm_weight_fixed

    def rollout_llm_weight(self) -> float:
        """The weight to log for the rollout just collected: ``w`` in the ``fixed`` mode; otherwise
        the mean ``w_eff`` over the advised rows :meth:`forward` acted on since the last call
        (NaN when there was none). Resets that mean."""
        total, rows = self._weight_sum, self._weight_rows
        self._weight_sum, self._weight_rows = 0.0, 0.0
        if self.fusion == "fixed":
            return float(self.llm_weight().detach())
        return total / rows if rows > 0 else float("nan")

    # -- distributions -----------------------------------------------------------------
    def _latents(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fusion == "observation" and self.llm_weight_override == 0:
            obs = obs.clone()
            obs[:, ADVICE] = 0.0  # RL only: no advice at all, as when none is present
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def effective_weight(self, obs: torch.Tensor, latent_pi: torch.Tensor, action_masks: Any = None) -> torch.Tensor:
        """``w_eff`` per row, before the ``present`` flag (see the module docstring)."""
        if self.llm_weight_override is not None:
            return torch.full((obs.shape[0],), float(self.llm_weight_override), device=obs.device)
        if self.fusion == "fixed":
            return self.llm_weight().expand(obs.shape[0])
        if self.fusion == "confidence":
            return self.llm_weight() * confidence_gate(obs, action_masks)
        if self.fusion == "learned_gate":
            return torch.sigmoid(self.llm_gate(torch.cat([latent_pi, obs[:, ADVICE]], dim=-1))).squeeze(-1)
        return torch.zeros(obs.shape[0], device=obs.device)

    def _fused(self, obs: torch.Tensor, latent_pi: torch.Tensor, action_masks: Any,
               track: bool = False) -> MaskableDistribution:
        present = obs[:, ADVICE_PRESENT]
        weight = self.effective_weight(obs, latent_pi, action_masks)
        if track:
            self._weight_sum += float((weight * present).sum())
            self._weight_rows += float(present.sum())
        logits = fuse(self.action_net(latent_pi), obs[:, ADVICE_PROBABILITIES], weight * present)
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)  # after fusion: masked actions get 0
        return distribution

    def forward(self, obs: torch.Tensor, deterministic: bool = False, action_masks: Any = None):
        obs = obs.float()
        latent_pi, latent_vf = self._latents(obs)
        distribution = self._fused(obs, latent_pi, action_masks, track=True)  # forward collects the rollouts
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), self.value_net(latent_vf), log_prob

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, action_masks: Any = None):
        obs = obs.float()
        latent_pi, latent_vf = self._latents(obs)
        distribution = self._fused(obs, latent_pi, action_masks)
        return self.value_net(latent_vf), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: Any, action_masks: Any = None) -> MaskableDistribution:
        obs = obs.float()
        return self._fused(obs, self._latents(obs)[0], action_masks)

    @torch.no_grad()
    def rl_probabilities(self, observations: np.ndarray, action_masks: np.ndarray | None = None) -> np.ndarray:
        """``(n, N_ACTIONS)`` probabilities of the RL part alone (no advice), masked when masks are given.

        Reads only the first 261 columns, so a 261-column observation works too: the advice
        columns are zero (no advice present), also for the ``observation`` mode's adapter.
        """
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32)[:, :PHASE3_DIM])
        padded = torch.zeros((obs.shape[0], PHASE3_DIM + len(ADVICE_COLUMNS)))
        padded[:, :PHASE3_DIM] = obs
        latent_pi = self._latents(padded)[0]
        logits = self.action_net(latent_pi)
        if action_masks is not None:
            logits = logits.masked_fill(~torch.as_tensor(np.asarray(action_masks, dtype=bool)), -torch.inf)
        return torch.softmax(logits, dim=-1).numpy()
