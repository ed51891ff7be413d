"""The CPU path behind ``--cpu-kernels``: what it relies on in torch and transformers is checked
here, so an upgrade that changes it fails these tests instead of quietly making replies slower
or different; and ``off`` runs on plain transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList

from speakstream.llm.cpu import EndTokens, FastKernels, PlainTransformers, cpu_kernels
from speakstream.llm.cpu.kv_cache import GrowingLayer
from speakstream.llm.cpu.onnx_runtime import OnnxCache
from speakstream.llm.cpu.quantize import SmallLinear, kernels_work
from speakstream.llm.cpu.sampler import TopKTopPSampler
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.llm.sources import ModelSource
from speakstream.settings import Settings

from tiny_llama import tiny_llama


class DrawingProcessor(LogitsProcessor):
    """Our sampler inside transformers' ``generate()``: run last (after the repetition penalty),
    it leaves only the drawn token standing, so greedy search picks it. The reference our own
    decoding loop is compared with."""

    def __init__(self, sampler: TopKTopPSampler) -> None:
        self.sampler = sampler

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return torch.full_like(scores, -float("inf")).scatter_(-1, self.sampler.draw(scores), 0.0)


def drawing_with_our_sampler(sampling: Sampling) -> dict:
    """``generate()`` arguments that draw as our decoding loop does (greedy at temperature 0)."""
    if sampling.temperature <= 0:
        return {"do_sample": False}
    generator = None if sampling.seed is None else torch.Generator().manual_seed(sampling.seed)
    sampler = TopKTopPSampler(sampling.temperature, sampling.top_p, generator=generator)
    return {"do_sample": False, "logits_processor": LogitsProcessorList([DrawingProcessor(sampler)])}


@pytest.mark.parametrize("weights", ["int4", "int8"])
def test_this_torch_has_the_kernels_the_fast_path_multiplies_with(weights: str) -> None:
    """They are private torch operators (torch is pinned): gone or changed, this fails."""
    assert kernels_work(weights)


def test_transformers_applies_the_repetition_penalty_before_our_sampler_draws() -> None:
    """The reference below relies on it: the sampler must see the penalised scores, as in our loop."""
    seen: list[torch.Tensor] = []

    class Watching(DrawingProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
            seen.append(scores.clone())
            return super().__call__(input_ids, scores)

    torch.manual_seed(0)
    model = tiny_llama().eval()
    prompt = torch.tensor([[5, 6, 7, 5]])
    raw = model(input_ids=prompt).logits[0, -1]
    with torch.inference_mode():
        model.generate(
            input_ids=prompt,
            max_new_tokens=1,
            do_sample=False,
            repetition_penalty=2.0,
            logits_processor=[Watching(TopKTopPSampler(1.0, 1.0))],
            pad_token_id=0,
        )
    expected = raw.clone()
    for token in (5, 6, 7):
        expected[token] = expected[token] / 2.0 if expected[token] > 0 else expected[token] * 2.0
    assert torch.allclose(seen[0][0], expected, atol=1e-4)


def test_the_switch_names_one_path_or_the_other() -> None:
    assert isinstance(cpu_kernels("torch"), FastKernels) and isinstance(cpu_kernels("off"), PlainTransformers)
    assert PlainTransformers().sampling(0.5, 0.9, None) == {
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 50,
    }
    assert PlainTransformers().sampling(0.0, 0.9, 1) == {"do_sample": False}


@pytest.mark.slow
def test_with_the_switch_off_the_bundled_model_runs_on_plain_transformers(
    settings: Settings, bundled_gguf: Path
) -> None:
    plain = Settings(seed=7, cpu_kernels="off", model_cache=settings.model_cache)
    model = LanguageModel(plain).load(ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)"))
    assert model.weights == "float32"
    assert not any(isinstance(module, SmallLinear) for module in model._model.modules())
    cache = model.kernels.new_cache(model._model.config)
    assert type(cache) is DynamicCache and not any(isinstance(layer, GrowingLayer) for layer in cache.layers)
    france = [{"role": "user", "content": "What is the capital of France?"}]
    sampling = Sampling.from_settings(plain)
    assert "Paris" in "".join(model.stream_reply(france, sampling))
    again = "".join(model.stream_reply(france, sampling))  # the prompt cache on plain caches
    assert "Paris" in again and model.prompt_cache is not None and model.prompt_cache.hits >= 1


def generated_by_transformers(model: LanguageModel, messages: list[dict], sampling: Sampling) -> str:
    """The reply transformers' own ``generate()`` writes with the same sampler, penalty and cache."""
    tokenizer, net = model._tokenizer, model._model
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        written = net.generate(
            input_ids=prompt["input_ids"],
            attention_mask=prompt["attention_mask"],
            max_new_tokens=sampling.max_new_tokens,
            repetition_penalty=sampling.repetition_penalty,
            cache=model.kernels.new_cache(net.config),
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            **drawing_with_our_sampler(sampling),
        )
    return tokenizer.decode(written[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def uncached(settings: Settings, bundled_gguf: Path) -> LanguageModel:
    """The bundled model without the prompt cache (its split reading of a prompt is compared elsewhere)."""
    plain = Settings(prompt_cache_tokens=0, model_cache=settings.model_cache, cpu_kernels="torch")
    return LanguageModel(plain).load(ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "seed", "temperature"),
    [("What is the capital of France?", 3, 0.2), ("Write a haiku about autumn.", 11, 0.8), ("Hi!", 5, 0.0)],
)
def test_the_fast_decoding_loop_writes_what_generate_writes(
    uncached: LanguageModel, question: str, seed: int, temperature: float
) -> None:
    messages = [{"role": "user", "content": question}]
    sampling = Sampling(temperature, 0.9, 1.15, 48, seed)
    ours = "".join(uncached.stream_reply(messages, sampling))
    assert ours == generated_by_transformers(uncached, messages, sampling)


@pytest.mark.slow
def test_the_shrunk_model_is_kept_so_the_next_start_skips_shrinking_and_answers_the_same(
    bundled_gguf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = Settings(model_cache=tmp_path, prompt_cache_tokens=0, cpu_kernels="torch")
    source = ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)")
    first = LanguageModel(chosen).load(source)
    kept = list((tmp_path / "packed").glob("*-int4-*.pt"))
    assert len(kept) == 1 and first.weights == "int4"
    caplog.set_level("INFO")
    again = LanguageModel(chosen).load(source)
    assert "kept from an earlier start" in caplog.text and again.weights == "int4"
    france = [{"role": "user", "content": "What is the capital of France?"}]
    sampling = Sampling(0.5, 0.9, 1.15, 32, 4)
    assert "".join(again.stream_reply(france, sampling)) == "".join(first.stream_reply(france, sampling))
    kept[0].write_bytes(b"not a model")  # a broken copy is rebuilt, never fatal
    assert LanguageModel(chosen).load(source).weights == "int4"


def test_the_onnx_model_runs_on_the_threads_the_budget_gave_while_the_loops_own_work_runs_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(torch's idle OpenMP workers spin after a parallel step, on the cores ONNX Runtime's need.)"""
    seen: list[tuple[str, int]] = []

    class Model:
        def __call__(self, input_ids: torch.Tensor, **kwargs: object) -> object:
            seen.append(("model", torch.get_num_threads()))
            return type("Out", (), {"logits": torch.randn(1, input_ids.shape[1], 64)})()

    class Gate:
        def stops(self) -> bool:
            return False

    class Streamer:
        def put(self, value: torch.Tensor) -> None:
            pass

        def end(self) -> None:
            pass

    draw = TopKTopPSampler.draw
    monkeypatch.setattr(
        TopKTopPSampler,
        "draw",
        lambda self, scores: seen.append(("draw", torch.get_num_threads())) or draw(self, scores),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        kernels = cpu_kernels("onnx", threads=2)
        kernels.generate(
            Model(),
            torch.tensor([[1, 2, 3]]),
            OnnxCache(),
            Sampling(0.7, 0.9, 1.1, 4, seed=1),
            EndTokens(frozenset(), None),
            Gate(),
            Streamer(),
        )
    finally:
        torch.set_num_threads(before)
    assert [what for what, _ in seen] == ["model", "draw"] * 4 + ["model"]
    assert {threads for what, threads in seen if what == "model"} == {2}
    assert {threads for what, threads in seen if what == "draw"} == {1}
