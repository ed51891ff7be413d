"""Smaller weights: the bundled model's 4-bit layers are re-packed without losing anything,
and the model answers as well as in float32."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from speakstream.llm.cpu import FastKernels
from speakstream.llm.cpu.decoder_layer import FusedDecoderLayer
from speakstream.llm.cpu.kv_cache import new_cache
from speakstream.llm.cpu.quantize import Int4Linear, Int8Linear, SmallLinear, choose_weights, kernels_work, quantize
from speakstream.llm.engine_choice import QUALITY_REFERENCE as REFERENCE
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.llm.sources import ModelSource
from speakstream.settings import Settings

from tiny_llama import tiny_llama


def relative_error(layer: torch.nn.Module, linear: torch.nn.Linear) -> float:
    x = torch.randn(4, linear.in_features)
    with torch.no_grad():
        expected = linear(x)
        return float((layer(x) - expected).norm() / expected.norm())


def q4_1_linear(rows: int = 64, columns: int = 128) -> torch.nn.Linear:
    """A layer whose weights are what a Q4_1 GGUF de-quantises to: groups of 32 values q * d + m."""
    levels = torch.randint(0, 16, (rows, columns // 32, 32)).float()
    levels[..., 0], levels[..., 1] = 0, 15  # ggml's Q4_1 maps each block's minimum to 0, maximum to 15
    scale, minimum = torch.rand(rows, columns // 32, 1) * 0.02, torch.randn(rows, columns // 32, 1) * 0.1
    linear = torch.nn.Linear(columns, rows, bias=False)
    linear.weight.data = (levels * scale + minimum).reshape(rows, columns)
    return linear


def test_int4_gives_back_q4_1_weights_and_only_rounds_arbitrary_ones() -> None:
    torch.manual_seed(0)
    assert kernels_work("int4")
    assert relative_error(Int4Linear(exact := q4_1_linear()), exact) < 0.01  # bfloat16 rounding only
    arbitrary = torch.nn.Linear(128, 64, bias=False)
    assert relative_error(Int4Linear(arbitrary), arbitrary) > 0.03  # 16 levels cannot hold these


class HiddenOps:
    """``torch.ops.aten`` of a torch build without some ops: asking for one raises AttributeError."""

    def __init__(self, aten: object, hidden: set[str]) -> None:
        self.aten, self.hidden = aten, hidden

    def __getattr__(self, name: str) -> object:
        if name in self.hidden:
            raise AttributeError(f"'_OpNamespace' 'aten' object has no attribute '{name}'")
        return getattr(self.aten, name)


@pytest.mark.parametrize(("weights", "op"), [("int4", "_weight_int4pack_mm_for_cpu"), ("int8", "_weight_int8pack_mm")])
def test_a_torch_build_without_the_kernel_op_keeps_float32_weights_instead_of_crashing(
    monkeypatch: pytest.MonkeyPatch, weights: str, op: str
) -> None:
    """These kernels are torch internals (pinned in requirements.txt); a build without them must
    fall back, not fail at start."""
    monkeypatch.setattr(torch.ops, "aten", HiddenOps(torch.ops.aten, {op}))
    assert not kernels_work(weights)
    model, kind = FastKernels().shrink(tiny_llama(), weights, None)
    assert kind == "float32"
    assert not any(isinstance(module, SmallLinear) for module in model.modules())


def test_int8_rows_stay_within_a_percent() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 256, bias=False)
    assert relative_error(Int8Linear(linear), linear) < 0.01


def test_auto_means_int4_for_every_model() -> None:
    assert choose_weights("auto") == "int4"
    assert choose_weights("int8") == "int8" and choose_weights("float32") == "float32"


def test_every_decoder_layer_and_the_head_are_swapped_and_the_model_still_runs() -> None:
    model = tiny_llama()
    assert quantize(model, "int4") == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer; the head
    assert all(isinstance(layer, FusedDecoderLayer) for layer in model.model.layers)
    assert isinstance(model.model.layers[1].down, Int4Linear)
    assert isinstance(model.get_output_embeddings(), Int8Linear)
    logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 96) and bool(torch.isfinite(logits).all())


def decode(model: LlamaForCausalLM, prompt: list[int], steps: int) -> torch.Tensor:
    """Logits of a prompt read in two parts (as after a cached prompt start), then of ``steps``
    tokens fed one by one through the cache."""
    cache = new_cache(model.config)
    half = len(prompt) // 2
    with torch.inference_mode():
        logits = [model(input_ids=torch.tensor([part]), cache=cache).logits for part in (prompt[:half], prompt[half:])]
        for step in range(steps):
            logits.append(model(input_ids=torch.tensor([[step % 90 + 1]]), cache=cache).logits)
    return torch.cat(logits, dim=1)


@pytest.mark.parametrize(("weights", "attention"), [("int4", "sdpa"), ("int8", "sdpa"), ("int4", "eager")])
def test_fused_layers_compute_what_the_layer_by_layer_swap_does(
    weights: str, attention: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stacked q/k/v and gate/up, reordered rotary pairs and the one-token attention path
    give the same logits as transformers' own layers with the same small weights, whichever
    attention the model reads its prompts with."""
    fused, unfused = tiny_llama(initializer_range=0.2), tiny_llama(initializer_range=0.2)  # attention that matters
    for model in (fused, unfused):
        model.config._attn_implementation = attention
    quantize(fused, weights)
    monkeypatch.setattr("speakstream.llm.cpu.decoder_layer.can_fuse", lambda layer, fits: False)
    quantize(unfused, weights)
    assert not isinstance(unfused.model.layers[0], FusedDecoderLayer)
    prompt = [5, 17, 3, 42, 8, 61, 2]
    ours, theirs = decode(fused, prompt, 12), decode(unfused, prompt, 12)
    # bfloat16 rounds differently in stacked products: a few hundredths; any wrong step: whole units
    assert float((ours - theirs).abs().max()) < 0.1 * float(theirs.std())


def test_layers_the_kernels_cannot_take_stay_float32() -> None:
    model = tiny_llama(hidden_size=48)  # 48 columns: not whole groups of 32
    quantize(model, "int4")
    assert not isinstance(model.model.layers[0], FusedDecoderLayer)
    assert isinstance(model.model.layers[0].self_attn.q_proj, torch.nn.Linear)
    assert isinstance(model.model.layers[0].mlp.down_proj, Int4Linear)  # 128 columns: swapped
    assert bool(torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all())


def test_layers_with_biases_are_swapped_linear_by_linear() -> None:
    model = tiny_llama(attention_bias=True)
    quantize(model, "int4")
    assert not isinstance(model.model.layers[0], FusedDecoderLayer)
    assert isinstance(model.model.layers[0].mlp.down_proj, Int4Linear)  # no bias there: still swapped


@pytest.mark.slow
def test_the_bundled_model_in_int4_is_as_good_as_in_float32(
    model: LanguageModel, settings: Settings, bundled_gguf: Path
) -> None:
    assert model.weights == "int4", "auto picks int4 for the bundled Q4_1 GGUF"
    source = ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)")
    full = LanguageModel(dataclasses.replace(settings, weights="float32")).load(source)
    text = REFERENCE.read_text(encoding="utf-8")
    assert model.perplexity(text) == pytest.approx(full.perplexity(text), rel=0.01)
    greedy = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=16)
    france = [{"role": "user", "content": "What is the capital of France?"}]
    answers = ["".join(m.stream_reply(france, greedy)) for m in (model, full)]
    assert answers[0] == answers[1] and "Paris" in answers[0]
