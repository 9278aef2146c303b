"""Phase 3's policy built from a Phase 2 policy behind a 261 -> 228 adapter.

The adapter is the policy's features extractor: a linear map initialised as
the identity on the first 228 inputs (the Phase 2 view) and zero on the 33 new
ones, bias zero. So a fresh Phase 3 policy acts exactly as the Phase 2 policy
it came from. In the ``observation`` fusion mode it also reads the 10 advice
columns (271 -> 228, zero on them at init too). Because the adapter is part of
the policy when the model is built, its parameters are in the optimizer from
the start.

During the warm-up only the adapter trains (:func:`set_adapter_only`); then
everything does. :func:`validate_warmup` refuses a warm-up that is not
shorter than the run.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from hybrid_trader.agents.fusion import FusedMaskablePolicy, validate_fusion
from hybrid_trader.features.registry import HYBRID_DIM, PHASE2_DIM, PHASE3_DIM

__all__ = ["ObservationAdapter", "phase3_from_phase2", "set_adapter_only", "validate_warmup", "trainable_parameters"]


class ObservationAdapter(BaseFeaturesExtractor):
    """Linear 261 (or ``input_dim``) -> 228, identity on the Phase 2 columns and zero on the others at init."""

    def __init__(self, observation_space: gym.spaces.Box, output_dim: int = PHASE2_DIM,
                 input_dim: int = PHASE3_DIM) -> None:
        super().__init__(observation_space, features_dim=output_dim)
        if not output_dim <= input_dim <= int(observation_space.shape[0]):
            raise ValueError(f"the adapter maps the first {input_dim} of {observation_space.shape[0]} columns to "
                             f"{output_dim}: it needs output_dim <= input_dim <= observation columns")
        self.input_dim = input_dim
        self.linear = nn.Linear(input_dim, output_dim)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Identity on the first ``features_dim`` inputs, zero elsewhere, bias zero (in place,
        so an optimizer holding these parameters keeps them)."""
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[:, : self.features_dim] = torch.eye(self.features_dim)
            self.linear.bias.zero_()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        # Columns past input_dim (the advisor's opinion, unless input_dim covers it) are for the fusion.
        return self.linear(observations[:, : self.input_dim])


def phase3_from_phase2(phase2: MaskablePPO, env: Any, *, llm_weight: float = 0.2, learn_llm_weight: bool = False,
                       critic_adapter: bool = False, fusion: str = "fixed", **ppo_kwargs: Any) -> MaskablePPO:
    """A Phase 3 hybrid MaskablePPO over ``env`` whose networks are Phase 2's.

    ``env`` gives the hybrid observation (the 261 columns and the advisor's opinion,
    :data:`HYBRID_DIM`). ``ppo_kwargs`` are Phase 3's own hyperparameters: nothing is
    inherited from Phase 2 but the network shapes, which must match to copy the weights.
    With ``critic_adapter`` the value network gets its own adapter (same initialisation),
    trained by the value loss alone. ``fusion`` is the fusion mode
    (:mod:`~hybrid_trader.agents.fusion`); in the ``observation`` mode the adapters (the
    critic's too) read the advice columns as well (:data:`HYBRID_DIM` inputs).
    """
    validate_fusion(fusion, llm_weight, learn_llm_weight)
    if env.observation_space.shape != (HYBRID_DIM,):
        raise ValueError(f"the hybrid policy observes {HYBRID_DIM} columns (261 + the advisor's opinion), "
                         f"the environment gives {env.observation_space.shape}")
    if phase2.observation_space.shape != (PHASE2_DIM,):
        raise ValueError(f"the Phase 2 policy observes {phase2.observation_space.shape}, expected ({PHASE2_DIM},)")
    model = MaskablePPO(
        FusedMaskablePolicy, env,
        policy_kwargs={"net_arch": phase2.policy.net_arch, "activation_fn": phase2.policy.activation_fn,
                       "features_extractor_class": ObservationAdapter,
                       "features_extractor_kwargs": {"input_dim": HYBRID_DIM if fusion == "observation"
                                                     else PHASE3_DIM},
                       "share_features_extractor": not critic_adapter,
                       "llm_weight": llm_weight, "learn_llm_weight": learn_llm_weight, "fusion": fusion},
        device="cpu", **ppo_kwargs,
    )
    # SB3 re-initialises every module orthogonally after building the policy: restore the identity.
    for adapter in _adapters(model):
        adapter.reset_to_identity()
    extractors = ("features_extractor", "pi_features_extractor", "vf_features_extractor")
    copied = {k: v for k, v in phase2.policy.state_dict().items() if not k.startswith(extractors)}
    missing, unexpected = model.policy.load_state_dict(copied, strict=False)
    own = ("llm_weight_fixed", "llm_weight_logit", "llm_gate.weight", "llm_gate.bias")
    if unexpected or any(not k.startswith(extractors) and k not in own for k in missing):
        raise ValueError(f"Phase 2 weights do not fit Phase 3: missing {missing}, unexpected {unexpected}")
    return model


def _adapters(model: MaskablePPO) -> list[ObservationAdapter]:
    policy = model.policy
    if policy.share_features_extractor:
        return [policy.features_extractor]
    return [policy.pi_features_extractor, policy.vf_features_extractor]


def _adapter_parameters(model: MaskablePPO) -> list[nn.Parameter]:
    return [p for adapter in _adapters(model) for p in adapter.parameters()]


def trainable_parameters(model: MaskablePPO) -> int:
    """Parameters that currently receive gradients."""
    return sum(p.numel() for p in model.policy.parameters() if p.requires_grad)


def set_adapter_only(model: MaskablePPO, adapter_only: bool) -> tuple[int, int]:
    """Freeze everything but the adapter (``True``) or unfreeze all (``False``).

    Returns:
        Trainable parameter counts before and after.
    """
    before = trainable_parameters(model)
    adapter = {id(p) for p in _adapter_parameters(model)}
    for parameter in model.policy.parameters():
        parameter.requires_grad_(id(parameter) in adapter or not adapter_only)
    return before, trainable_parameters(model)


def validate_warmup(adapter_warmup_steps: int, total_timesteps: int) -> None:
    """Refuse a warm-up that would leave the Phase 2 network frozen for the whole run."""
    if adapter_warmup_steps < 0:
        raise ValueError("phase3.adapter_warmup_steps must be >= 0")
    if adapter_warmup_steps >= total_timesteps:
        raise ValueError(
            f"phase3.adapter_warmup_steps ({adapter_warmup_steps:,}) is not shorter than the run "
            f"(total_timesteps {total_timesteps:,}): the Phase 2 network would never train. "
            "Lower the warm-up (e.g. 10-20% of the run) or train longer."
        )
