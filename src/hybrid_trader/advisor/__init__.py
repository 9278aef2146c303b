"""The LLM advisor: a local causal LM asked for a distribution over the trading actions."""
