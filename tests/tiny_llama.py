"""A small Llama with random weights, written by the tests (the real models cannot be fetched here)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(**overrides: float) -> LlamaForCausalLM:
    torch.manual_seed(0)
    shape = {"vocab_size": 96, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    config = LlamaConfig(**{**shape, "num_attention_heads": 4, "num_key_value_heads": 2, **overrides})
    return LlamaForCausalLM(config).eval()
