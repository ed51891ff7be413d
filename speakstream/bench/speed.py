"""Before and after, in one run: the settings this project shipped with, next to today's defaults.

For each configuration `python app.py` is started twice (seconds until its page is served),
then the model is loaded in this process and every prompt runs twice:
text only (the model's own speed) and spoken with the Piper voice (first audio, how far
audio stays ahead of playback). Perplexity on the quality reference text checks that faster
weights did not make the model worse. The same sampling seed per prompt in both configurations.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

from speakstream.bench.replies import DEFAULT_PROMPTS, load_prompts
from speakstream.bench.report import median_p90, table
from speakstream.llm.engine_choice import QUALITY_REFERENCE
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.pipeline.timeline import Timeline
from speakstream.server import assemble
from speakstream.settings import ENV_PREFIX, Settings
from speakstream.voices import PiperVoice, VoiceSet

# What changed since the first release, set back to its old value.
BEFORE = {
    "cpu_kernels": "off",
    "weights": "float32",
    "prompt_cache_tokens": 0,
    "first_chunk_max_chars": 40,
    "share_cores": False,
}


def _reply(pipeline: ReplyPipeline, model: LanguageModel, prompt: str, seed: int, speak: bool) -> Timeline:
    sampling = dataclasses.replace(Sampling.from_settings(pipeline.settings), seed=seed)
    options = pipeline.options(model, speak=speak, sampling=sampling)
    *_, final = pipeline.reply([{"role": "user", "content": prompt}], threading.Event(), options)
    return final.timeline


def settings_env(overrides: dict[str, object]) -> dict[str, str]:
    """This process's environment with ``overrides`` as SPEAKSTREAM_* variables, for `python app.py`."""
    return {**os.environ, **{ENV_PREFIX + name.upper(): str(value) for name, value in overrides.items()}}


def _start_up_seconds(overrides: dict[str, object], runs: int) -> list[float | None]:
    """Seconds from starting `python app.py` to its page being served."""
    from speakstream.local_app import free_port, start_app, stop_app

    env = settings_env(overrides)
    seconds: list[float | None] = []
    for _ in range(runs):
        started = time.perf_counter()
        process = start_app(free_port(), env, subprocess.DEVNULL)
        seconds.append(time.perf_counter() - started)
        stop_app(process)
    return seconds


def _measure(settings: Settings, voice: PiperVoice, prompts: list[str]) -> dict[str, list[float | None]]:
    model = LanguageModel(settings).load()
    pipeline = assemble(model, VoiceSet({voice.key: voice}, voice.key), settings).pipeline
    _reply(pipeline, model, "Hello!", 0, speak=True)  # warm-up
    quiet = [_reply(pipeline, model, prompt, 1000 + i, speak=False) for i, prompt in enumerate(prompts)]
    spoken = [_reply(pipeline, model, prompt, 1000 + i, speak=True) for i, prompt in enumerate(prompts)]
    return {
        "perplexity": [model.perplexity(QUALITY_REFERENCE.read_text(encoding="utf-8"))],
        "first token ms": [t.first_token and t.first_token * 1000 for t in spoken],
        "first audio ms": [t.first_audio and t.first_audio * 1000 for t in spoken],
        "tokens/s alone": [t.tokens_per_second for t in quiet],
        "tokens/s speaking": [t.tokens_per_second for t in spoken],
        "min lead s": [min(t.playback_leads(), default=None) for t in spoken],
        "gaps": [float(len(t.gaps())) for t in spoken],
    }


def bench_speed(settings: Settings, prompts_file: Path = DEFAULT_PROMPTS, limit: int | None = None) -> None:
    """Print medians / p90 before and after, and the after/before ratio of the medians.

    Start-up is `python app.py` (twice each) until its page is served, with the models cached.
    """
    prompts = load_prompts(prompts_file)[:limit]
    voice = PiperVoice(threads=settings.tts_threads).load()
    before = dataclasses.replace(settings, **BEFORE)
    results = {}
    for name, config, overrides in (("before", before, BEFORE), ("after", settings, {})):
        results[name] = {"start-up s": _start_up_seconds(overrides, runs=2), **_measure(config, voice, prompts)}
        gc.collect()
    rows = []
    for figure in results["before"]:
        old, new = results["before"][figure], results["after"][figure]
        digits = 0 if figure.endswith("ms") or figure == "gaps" else 2
        medians = [statistics.median([v for v in values if v is not None] or [float("nan")]) for values in (old, new)]
        ratio = f"{medians[1] / medians[0]:.2f}" if medians[0] else "-"
        rows.append([figure, median_p90(old, 1, digits), median_p90(new, 1, digits), ratio])
    print(f"before: {BEFORE}; after: today's defaults; {len(prompts)} prompts, torch threads {settings.threads}")
    print(table(["figure", "before (median / p90)", "after (median / p90)", "after/before"], rows))
