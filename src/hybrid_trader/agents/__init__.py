"""Agents: Phase 2 MaskablePPO training, telemetry callbacks, backtests and the model registry."""
