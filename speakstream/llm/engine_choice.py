"""``--cpu-kernels auto``: the fastest way to run the model on this machine, measured at first start and kept.

Which path decodes fastest depends on the CPU more than on anything we control: torch's 4-bit
kernels lead where there is AVX-512 and trail far behind elsewhere, where ONNX Runtime's
kernels lead. So at the first start on a machine each candidate is loaded and timed on a
short reply (a couple of seconds each), its perplexity on a reference text is taken, and
the fastest of those within 2% of float32's perplexity is used. The choice is kept in the
cache folder under a name made of the host (CPU, vector extensions, cores, torch's kernel
level), the model's files, the thread count, and the versions and code involved, so it is
measured again only when one of those changes. The losing candidates' kept copies are
deleted.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speakstream.host import describe_host
from speakstream.llm.sources import ModelLoadError, ModelSource
from speakstream.settings import Settings

log = logging.getLogger(__name__)

QUALITY_REFERENCE = Path(__file__).with_name("quality_reference.txt")
# (--cpu-kernels, SPEAKSTREAM_WEIGHTS): the float32 one is the quality reference.
CANDIDATES = (("torch", "int4"), ("torch", "int8"), ("onnx", "int8"), ("off", "float32"))
REFERENCE = ("off", "float32")
QUALITY_TOLERANCE = 1.02
TIMED_TOKENS = 48
TIMED_SECONDS = 2.0
TIMED_PROMPT = [{"role": "user", "content": "Tell me a short story about a robot who learns to paint."}]


@dataclass(frozen=True)
class Measured:
    """One candidate on this machine (a figure is None where it could not be had; ``error`` says why)."""

    kernels: str
    weights: str
    tokens_per_second: float | None = None
    perplexity: float | None = None
    error: str = ""

    @property
    def label(self) -> str:
        return f"{'transformers' if self.kernels == 'off' else self.kernels} {self.weights}"


@dataclass(frozen=True)
class EngineChoice:
    """The path picked, and what was measured to pick it."""

    kernels: str
    weights: str
    measured: tuple[Measured, ...]
    host: str

    def reason(self) -> str:
        figures = []
        for m in sorted(self.measured, key=lambda m: -(m.tokens_per_second or 0)):
            if m.error:
                figures.append(f"{m.label} failed ({m.error})")
            else:
                figures.append(f"{m.label} {m.tokens_per_second:.0f} tokens/s, perplexity {m.perplexity:.2f}")
        return "measured on this machine: " + "; ".join(figures)


def pick(measured: list[Measured]) -> Measured:
    """The fastest candidate whose perplexity is within ``QUALITY_TOLERANCE`` of float32's
    (of the best one measured, where float32 could not be measured)."""
    working = [
        m
        for m in measured
        if m.tokens_per_second is not None and m.perplexity is not None and math.isfinite(m.perplexity)
    ]
    if not working:
        raise ModelLoadError("No way to run the model worked: " + "; ".join(f"{m.label}: {m.error}" for m in measured))
    reference = next((m for m in working if (m.kernels, m.weights) == REFERENCE), None)
    bound = (reference.perplexity if reference else min(m.perplexity for m in working)) * QUALITY_TOLERANCE  # type: ignore[type-var, operator]
    good = [m for m in working if m.perplexity <= bound]  # type: ignore[operator]
    return max(good, key=lambda m: m.tokens_per_second)  # type: ignore[arg-type, return-value]


def choice_file(settings: Settings, source: ModelSource) -> Path:
    """Where the choice for this host, model, thread count, ``SPEAKSTREAM_WEIGHTS`` and versions is kept."""
    import onnxruntime
    import torch
    import transformers

    from speakstream.llm.cpu import kept_name, kept_stem
    from speakstream.llm.cpu.onnx_runtime import builder_version

    versions = (
        describe_host(probe_memory=False).key(),
        str(settings.threads),
        settings.weights,
        repr(CANDIDATES),
        torch.__version__,
        transformers.__version__,
        onnxruntime.__version__,
        builder_version(),
    )
    digest = kept_name(source.folder, source.gguf_file, *versions)
    return settings.model_cache_dir / "engine" / f"{kept_stem(source.folder, source.gguf_file)}-{digest}.json"


def choose_engine(settings: Settings, source: ModelSource) -> EngineChoice:
    """The kept choice for this machine and model, or a new one measured now."""
    path = choice_file(settings, source)
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        return EngineChoice(
            kept["kernels"], kept["weights"], tuple(Measured(**m) for m in kept["measured"]), kept["host"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    host = describe_host()
    log.info("Measuring how to run the model on this machine (once): %s", host.line())
    measured = [measure(settings, source, kernels, weights) for kernels, weights in candidates(settings)]
    best = pick(measured)
    choice = EngineChoice(best.kernels, best.weights, tuple(measured), host.line())
    _drop_losers(settings, source, choice)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(choice), indent=1), encoding="utf-8")
    except OSError as error:
        log.warning("Could not keep the engine choice in %s: %s", path, error)
    return choice


def candidates(settings: Settings) -> list[tuple[str, str]]:
    """Every candidate, or only those with the weights that ``SPEAKSTREAM_WEIGHTS`` asks for."""
    if settings.weights == "auto":
        return list(CANDIDATES)
    return [(k, w) for k, w in CANDIDATES if w == settings.weights or (k, w) == REFERENCE]


def measure(settings: Settings, source: ModelSource, kernels: str, weights: str) -> Measured:
    """Load the model this way, time a short reply written alone, and score the reference text."""
    from speakstream.llm.model import LanguageModel

    chosen = dataclasses.replace(settings, cpu_kernels=kernels, weights=weights, prompt_cache_tokens=0)
    model: Any = None
    try:
        model = LanguageModel(chosen).load(source)
        if model.weights != weights:  # (torch without the kernels falls back to float32)
            return Measured(kernels, weights, error=f"loaded {model.weights} instead")
        speed = decode_speed(model)
        perplexity = model.perplexity(QUALITY_REFERENCE.read_text(encoding="utf-8"))
        return Measured(kernels, weights, speed, perplexity)
    except Exception as error:  # noqa: BLE001 - a candidate that fails is not chosen, and the log says why
        log.warning("Running the model as %s %s failed: %s", kernels, weights, error)
        return Measured(kernels, weights, error=str(error)[:200])
    finally:
        del model
        gc.collect()


def decode_speed(model: Any) -> float:
    """Tokens a second after the first, greedy, for ``TIMED_TOKENS`` tokens or ``TIMED_SECONDS``
    from the first token on (reading the prompt is not timed: however slow, something is measured)."""
    from speakstream.llm.model import ReplyGate, Sampling

    greedy = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=1.15, max_new_tokens=TIMED_TOKENS)
    stop = threading.Event()
    timer = threading.Timer(TIMED_SECONDS, stop.set)
    text, first = "", None
    try:
        for piece in model.stream_reply(TIMED_PROMPT, greedy, ReplyGate(stop)):
            if first is None:
                first = time.perf_counter()
                timer.start()
            else:
                text += piece
    finally:
        timer.cancel()
    took = time.perf_counter() - (first or time.perf_counter())
    tokens = model.text_tokens(text)
    if not tokens or took <= 0:
        raise ModelLoadError("the timed reply wrote nothing")
    return tokens / took


def _drop_losers(settings: Settings, source: ModelSource, choice: EngineChoice) -> None:
    """Delete the kept copies (packed weights, ONNX models) of the candidates not chosen."""
    from speakstream.llm.cpu import cpu_kernels

    for m in choice.measured:
        if (m.kernels, m.weights) == (choice.kernels, choice.weights):
            continue
        kept = cpu_kernels(m.kernels).packed_file(source.folder, source.gguf_file, m.weights, settings.model_cache_dir)
        if kept is None or not kept.exists():
            continue
        if kept.is_dir():
            shutil.rmtree(kept, ignore_errors=True)
        else:
            kept.unlink(missing_ok=True)
