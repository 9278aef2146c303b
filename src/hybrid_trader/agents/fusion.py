"""The hybrid policy: the RL distribution fused with the advisor's opinion, inside the policy.

The hybrid observation is the 261 columns plus the advisor's latest opinion
(:data:`~hybrid_trader.features.registry.ADVICE_COLUMNS`: one probability per
action, confidence, age, present). The RL part (adapter, Phase 2 networks) reads the
261 columns; the action distribution is

    pi = (1 - w * present) * pi_RL + w * present * pi_LLM,

then the action masks are applied (masked actions get probability 0 and the
rest is renormalised). PPO samples from ``pi`` and stores ``log pi(a)``; the
same observation gives the same ``pi`` when the update re-evaluates it, so PPO
stays on-policy. Without advice (``present`` 0) or with ``w`` 0, ``pi`` is
exactly ``pi_RL``.

``w`` is ``llm_weight``: fixed, or learned (``learn_llm_weight``) as
``sigmoid(theta)`` with ``theta`` in the optimizer from the start.
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

__all__ = ["FusedMaskablePolicy", "fuse", "ADVICE_PROBABILITIES", "ADVICE_CONFIDENCE", "ADVICE_AGE",
           "ADVICE_PRESENT"]

ADVICE_PROBABILITIES = slice(PHASE3_DIM, PHASE3_DIM + N_ACTIONS)
ADVICE_CONFIDENCE, ADVICE_AGE, ADVICE_PRESENT = (c.index for c in ADVICE_COLUMNS[N_ACTIONS:])


def fuse(rl_logits: torch.Tensor, advice: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Log of ``(1 - weight) * softmax(rl_logits) + weight * advice`` (unmasked), row by row.

    Rows with ``weight`` 0 return ``log_softmax(rl_logits)`` exactly.
    """
    rl_log = torch.log_softmax(rl_logits, dim=-1)
    weight = weight.reshape(-1, 1)
    mixed = torch.log(((1 - weight) * rl_log.exp() + weight * advice).clamp_min(1e-12))
    return torch.where(weight > 0, mixed, rl_log)


class FusedMaskablePolicy(MaskableActorCriticPolicy):
    """MaskablePPO's actor-critic with the advisor fused into its action distribution."""

    def __init__(self, *args: Any, llm_weight: float = 0.2, learn_llm_weight: bool = False, **kwargs: Any) -> None:
        if not 0.0 <= llm_weight < 1.0:
            raise ValueError("phase3.llm_weight must be in [0, 1)")
        self._initial_llm_weight = float(llm_weight)
        self.learn_llm_weight = bool(learn_llm_weight)
        self.llm_weight_override: float | None = None  # e.g. 0 for an RL-only evaluation; not saved
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        # Created before the optimizer (built by super()._build) so that a learned weight is in it.
        value = torch.tensor(self._initial_llm_weight, dtype=torch.float32)
        if self.learn_llm_weight:
            self.llm_weight_logit = nn.Parameter(torch.logit(value.clamp(1e-4, 1 - 1e-4)))
        else:
            self.register_buffer("llm_weight_fixed", value)
        super()._build(lr_schedule)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(llm_weight=self._initial_llm_weight, learn_llm_weight=self.learn_llm_weight)
        return data

    def llm_weight(self) -> torch.Tensor:
        """The current ``w`` (the override, if set)."""
        if self.llm_weight_override is not None:
            return torch.tensor(float(self.llm_weight_override))
        return torch.sigmoid(self.llm_weight_logit) if self.learn_llm_weight else self.llm_weight_fixed

    # -- distributions -----------------------------------------------------------------
    def _latents(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def _fused(self, obs: torch.Tensor, latent_pi: torch.Tensor, action_masks: Any) -> MaskableDistribution:
        weight = self.llm_weight() * obs[:, ADVICE_PRESENT]
        logits = fuse(self.action_net(latent_pi), obs[:, ADVICE_PROBABILITIES], weight)
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)  # after fusion: masked actions get 0
        return distribution

    def forward(self, obs: torch.Tensor, deterministic: bool = False, action_masks: Any = None):
        obs = obs.float()
        latent_pi, latent_vf = self._latents(obs)
        distribution = self._fused(obs, latent_pi, action_masks)
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

        Reads only the first 261 columns, so a 261-column observation works too.
        """
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32)[:, :PHASE3_DIM])
        padded = torch.zeros((obs.shape[0], PHASE3_DIM + len(ADVICE_COLUMNS)))
        padded[:, :PHASE3_DIM] = obs
        latent_pi = self._latents(padded)[0]
        logits = self.action_net(latent_pi)
        if action_masks is not None:
            logits = logits.masked_fill(~torch.as_tensor(np.asarray(action_masks, dtype=bool)), -torch.inf)
        return torch.softmax(logits, dim=-1).numpy()
