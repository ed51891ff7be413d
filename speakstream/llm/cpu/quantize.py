"""Smaller weights for faster decoding on the CPU: 4-bit linear layers, an 8-bit output head.

Writing one token reads every weight of the model once, and on this class of CPU that
memory traffic, not arithmetic, sets the pace (float32 weights are four bytes each, read every token).
torch ships CPU kernels that multiply by packed 4-bit weights (groups of 32 values sharing
a scale and a zero point) and by 8-bit weights with one scale per row, both taking
bfloat16 activations.

The bundled GGUF stores every linear layer as Q4_1: blocks of 32 values ``q * d + m`` with
``q`` in 0..15, the block's minimum at ``q = 0`` and its maximum at ``q = 15``. Re-packing
the de-quantised weights by each group's minimum and maximum therefore gives back the
very same values (only the scales are rounded to bfloat16): the model is not made any
coarser than the file it came from. The tied output head (Q8_0 in the file) becomes
8-bit with one scale per row, a small extra rounding (``bench speed`` compares perplexity and
speed with float32).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

GROUP_SIZE = 32
INNER_K_TILES = 8  # the packing layout torch's CPU int4 kernel expects
ACTIVATIONS = torch.bfloat16


class SmallLinear(nn.Module):
    """A bias-free linear layer whose weights are stored small; subclasses supply the kernel."""

    out_features: int

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` (tokens x inputs, bfloat16) times the weights: the bare kernel, for fused layers."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.product(x.reshape(-1, x.shape[-1]).to(ACTIVATIONS))
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


class Int4Linear(SmallLinear):
    """A bias-free linear layer with 4-bit weights in groups of 32 (scale and zero point per group)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        rows, columns = weight.shape
        groups = weight.reshape(rows, columns // GROUP_SIZE, GROUP_SIZE)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = (high - low) / 15
        step = torch.where(scale > 0, scale, torch.ones_like(scale))
        levels = torch.clamp(torch.round((groups - low[..., None]) / step[..., None]), 0, 15)
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            levels.to(torch.int32).reshape(rows, columns), INNER_K_TILES
        )
        # The kernel computes (level - 8) * scale + zero: zero = minimum + 8 * scale.
        self.scales_and_zeros = torch.stack([scale, low + 8 * scale], -1).transpose(0, 1).contiguous().to(ACTIVATIONS)
        self.out_features = rows

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, GROUP_SIZE, self.scales_and_zeros)


class Int8Linear(SmallLinear):
    """A bias-free linear layer with 8-bit weights, one scale per output row."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(1).clamp(min=1e-12) / 127
        self.weight_int8 = torch.round(weight / scale[:, None]).to(torch.int8)
        self.scales = scale.to(ACTIVATIONS)
        self.out_features = weight.shape[0]

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)


def choose_weights(setting: str) -> str:
    """Resolve ``auto``: 4-bit weights for every model (for a Q4_1 GGUF they are exactly the file's own)."""
    return "int4" if setting == "auto" else setting


def kernels_work(weights: str) -> bool:
    """Whether this torch build has the CPU kernels ``weights`` needs (tried on a tiny layer).

    They are private ``torch.ops.aten`` ops: a build can lack one (AttributeError), have it
    without a CPU kernel (NotImplementedError) or refuse the layout (RuntimeError).
    """
    make = Int4Linear if weights == "int4" else Int8Linear
    try:
        make(nn.Linear(2 * GROUP_SIZE, 16, bias=False))(torch.zeros(1, 2 * GROUP_SIZE))
    except (AttributeError, RuntimeError, NotImplementedError) as error:
        log.warning("No %s kernels in this torch build (%s); keeping float32 weights", weights, error)
        return False
    return True


def fits_kernels(module: nn.Module) -> bool:
    """Whether the small-weight kernels can take this layer: linear, no bias, columns in whole groups."""
    return isinstance(module, nn.Linear) and module.bias is None and module.in_features % GROUP_SIZE == 0


def quantize(model: Any, weights: str) -> int:
    """Swap the decoder's linear layers (``int4`` or ``int8``) and the output head (8-bit) in place.

    Plain Llama layers (SmolLM2) are rebuilt whole as a :class:`FusedDecoderLayer`; in any
    other layer each linear layer is swapped on its own. Returns how many linear layers were
    swapped; one the kernels cannot take (no bias allowed, columns a multiple of the group
    size) keeps its float32 weights.
    """
    from speakstream.llm.cpu.decoder_layer import FusedDecoderLayer, can_fuse

    if weights == "float32":
        return 0
    make = Int4Linear if weights == "int4" else Int8Linear
    swapped = 0
    layers = model.model.layers
    for index, layer in enumerate(layers):
        if can_fuse(layer, fits_kernels):
            layers[index] = FusedDecoderLayer(layer, make)
            swapped += 7
    for parent in list(model.model.modules()):
        for name, child in list(parent.named_children()):
            if fits_kernels(child):
                setattr(parent, name, make(child))
                swapped += 1
    head = model.get_output_embeddings()
    if isinstance(head, nn.Linear) and head.bias is None:
        model.set_output_embeddings(Int8Linear(head))
        swapped += 1
    log.debug("Quantized %d linear layers to %s", swapped, weights)
    return swapped
