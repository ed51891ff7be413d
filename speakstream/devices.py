"""Where torch computes: the CPU, or a CUDA GPU when there is one (``--device``).

On a GPU the model runs in bfloat16 (float16 where the card has no bfloat16) with PyTorch's
scaled-dot-product attention, and the Coqui voices run there too; the CPU speed-ups
(:mod:`speakstream.llm.cpu`) are for the CPU only. Piper runs on the CPU either way.
"""

from __future__ import annotations

from typing import Any


class NoGpu(RuntimeError):
    """``--device cuda`` on a machine where torch sees no CUDA GPU."""


def choose_device(setting: str) -> str:
    """``cuda`` or ``cpu`` for ``--device`` (``auto``: the GPU when torch sees one)."""
    import torch

    available = torch.cuda.is_available()
    if setting == "cuda" and not available:
        raise NoGpu("--device cuda, but torch sees no CUDA GPU here (a CPU build of torch, or no driver)")
    return "cuda" if setting == "cuda" or (setting == "auto" and available) else "cpu"


def model_dtype(device: str) -> Any:
    """float32 on the CPU (the CPU speed-ups shrink it); bfloat16 on a GPU, float16 where it has none."""
    import torch

    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
