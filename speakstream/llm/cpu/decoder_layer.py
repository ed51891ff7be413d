"""A Llama-family decoder layer (SmolLM2's), rebuilt for token-by-token decoding with small weights.

With 4-bit weights the matrix products of one token are quick, and transformers'
general-purpose layer spends about as long again on dozens of small tensor operations per
layer, each paying a fixed dispatch cost whatever its size. This layer does the same
arithmetic with fewer of them:

- one product for q, k and v, one for gate and up (their weights stacked at load time);
- rotary positions as one complex multiplication: each head's q and k rows are reordered
  at load time so that the two values a rotation mixes sit side by side. Attention scores
  do not change (q and k are reordered alike); the cache simply keeps reordered keys;
- a one-token query goes straight to SDPA with grouped key/value heads; a longer prompt
  goes through transformers' attention and its causal mask.

The residual stream, the norms and attention stay in float32, and the products take
bfloat16, as in the per-layer swap of :mod:`speakstream.llm.cpu.quantize` (the README's
Benchmarks give what it gains, with the perplexity that shows nothing was lost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, eager_attention_forward

from speakstream.llm.cpu.quantize import ACTIVATIONS, SmallLinear


def can_fuse(layer: nn.Module, fits: Callable[[nn.Module], bool]) -> bool:
    """Whether ``layer`` is a plain Llama layer (SiLU gate, even head size) this module rebuilds,
    with every linear layer one the small-weight kernels take (``fits``)."""
    if type(layer) is not LlamaDecoderLayer:
        return False
    attention, mlp, config = layer.self_attn, layer.mlp, layer.self_attn.config
    linears = (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj, mlp.gate_proj, mlp.up_proj)
    return (
        all(fits(linear) for linear in (*linears, mlp.down_proj))
        and config.hidden_act == "silu"
        and attention.head_dim % 2 == 0
        and type(layer.input_layernorm) is LlamaRMSNorm
        and type(layer.post_attention_layernorm) is LlamaRMSNorm
    )


class FusedDecoderLayer(nn.Module):
    """Drop-in for a ``LlamaDecoderLayer``: same inputs and output, fewer operations per token."""

    is_causal = True  # read by transformers' attention functions, like the attributes below

    def __init__(self, layer: LlamaDecoderLayer, small: Callable[[nn.Linear], SmallLinear]) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.config = attention.config
        self.layer_idx = attention.layer_idx
        self.heads = self.config.num_attention_heads
        self.kv_heads = self.config.num_key_value_heads
        self.num_key_value_groups = self.heads // self.kv_heads
        self.head_dim = attention.head_dim
        self.scaling = attention.scaling
        queries = _pairs_side_by_side(attention.q_proj, self.heads, self.head_dim)
        keys = _pairs_side_by_side(attention.k_proj, self.kv_heads, self.head_dim)
        self.qkv = small(_stacked(queries, keys, attention.v_proj.weight))
        self.output = small(attention.o_proj)
        self.gate_up = small(_stacked(mlp.gate_proj.weight, mlp.up_proj.weight))
        self.down = small(mlp.down_proj)
        self.intermediate = mlp.gate_proj.out_features
        self.input_norm = layer.input_layernorm
        self.post_attention_norm = layer.post_attention_layernorm
        implementation = self.config._attn_implementation
        self._attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        batch, tokens, width = hidden_states.shape
        qkv = self.qkv.product(_normed(self.input_norm, hidden_states)).float().view(batch, tokens, -1, self.head_dim)
        rotated = _rotated(qkv[:, :, : self.heads + self.kv_heads], *position_embeddings)
        query = rotated[:, :, : self.heads].transpose(1, 2)
        key = rotated[:, :, self.heads :].transpose(1, 2)
        value = qkv[:, :, self.heads + self.kv_heads :].transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        if tokens == 1 and attention_mask is None:
            attended = F.scaled_dot_product_attention(query, key, value, scale=self.scaling, enable_gqa=True)
            attended = attended.transpose(1, 2)
        else:
            attended, _ = self._attention(self, query, key, value, attention_mask, dropout=0.0, scaling=self.scaling)
        attended = attended.reshape(batch * tokens, -1).to(ACTIVATIONS)
        hidden_states = hidden_states + self.output.product(attended).float().view(batch, tokens, width)
        gate_up = self.gate_up.product(_normed(self.post_attention_norm, hidden_states))
        gated = F.silu(gate_up[:, : self.intermediate]) * gate_up[:, self.intermediate :]
        return hidden_states + self.down.product(gated).float().view(batch, tokens, width)


def _normed(norm: LlamaRMSNorm, hidden_states: torch.Tensor) -> torch.Tensor:
    """RMS norm in float32 (one fused call), flattened to tokens x width in bfloat16 for a product."""
    width = hidden_states.shape[-1]
    normed = F.rms_norm(hidden_states, (width,), norm.weight, norm.variance_epsilon)
    return normed.to(ACTIVATIONS).view(-1, width)


def _rotated(pairs: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q and k heads (batch, tokens, heads, head_dim, pairs side by side) to their positions."""
    half = pairs.shape[-1] // 2
    turn = torch.complex(cos[..., :half], sin[..., :half]).unsqueeze(2)
    return torch.view_as_real(torch.view_as_complex(pairs.unflatten(-1, (half, 2))) * turn).flatten(-2)


def _pairs_side_by_side(linear: nn.Linear, heads: int, head_dim: int) -> torch.Tensor:
    """The weight rows reordered per head from (first halves, second halves) to (x0, x_half, x1, ...)."""
    order = torch.arange(head_dim).view(2, head_dim // 2).t().reshape(-1)
    return linear.weight.detach().view(heads, head_dim, -1)[:, order].reshape(heads * head_dim, -1)


def _stacked(*weights: torch.Tensor) -> nn.Linear:
    """One bias-free linear layer whose outputs are those of ``weights`` one after another."""
    stacked = torch.cat([weight.detach() for weight in weights])
    linear = nn.Linear(stacked.shape[1], stacked.shape[0], bias=False, device="meta")
    linear.weight = nn.Parameter(stacked, requires_grad=False)
    return linear
