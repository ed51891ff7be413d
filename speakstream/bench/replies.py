"""Whole replies through the real pipeline, next to the sequential baseline measured in the same run.

Pipelined: the app's way (the voice speaks chunk N while the model writes chunk N+1).
Sequential: generate the whole reply, then synthesize it chunk by chunk. Both runs of a
prompt use the same sampling seed, so they usually produce the same text.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import threading
import time
from pathlib import Path

from speakstream.audio.segments import resample
from speakstream.bench.report import median_p90, peak_rss_mb, table
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.pipeline.timeline import Timeline
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.speech_text import SpeechCleaner
from speakstream.voices import Voice, load_voices

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "eval" / "prompts.txt"


def load_prompts(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


def pipelined(
    pipeline: ReplyPipeline, model: LanguageModel, prompt: str, voice: Voice, sampling: Sampling
) -> tuple[Timeline, str]:
    options = pipeline.options(model, voice.key, sampling=sampling)
    *_, final = pipeline.reply([{"role": "user", "content": prompt}], threading.Event(), options)
    return final.timeline, final.text


def sequential(
    pipeline: ReplyPipeline, model: LanguageModel, prompt: str, voice: Voice, sampling: Sampling
) -> tuple[Timeline, str]:
    """The baseline: the whole reply is written first, then spoken."""
    timeline = Timeline(voice=voice.label)
    text = ""
    for piece in model.stream_reply([{"role": "user", "content": prompt}], sampling):
        timeline.mark("first_token")
        text += piece
    timeline.tokens = model.text_tokens(text)
    timeline.mark("generated")
    chunker, cleaner = TextChunker(rules_from_settings(pipeline.settings)), SpeechCleaner()
    timeline.mark("first_chunk")
    for chunk in chunker.feed(text) + chunker.flush():
        spoken = cleaner.clean(chunk)
        if not spoken:
            continue
        started = time.perf_counter()
        samples = resample(voice.synthesize(spoken), voice.sample_rate, pipeline.sample_rate)
        timeline.synthesis_seconds += time.perf_counter() - started
        timeline.mark("first_audio")
        timeline.segments.append((timeline.now(), samples.size / pipeline.sample_rate))
        timeline.audio_seconds += samples.size / pipeline.sample_rate
    timeline.mark("done")
    return timeline, text


def _row(name: str, timelines: list[Timeline]) -> list[str]:
    leads = [min(t.playback_leads(), default=None) for t in timelines]
    return [
        name,
        median_p90([t.first_token for t in timelines], 1000),
        median_p90([t.first_chunk for t in timelines], 1000),
        median_p90([t.first_audio for t in timelines], 1000),
        median_p90([t.done for t in timelines], 1, 2),
        median_p90([t.tokens_per_second for t in timelines], 1, 1),
        median_p90([t.real_time_factor for t in timelines], 1, 3),
        median_p90(leads, 1, 2),
        str(sum(len(t.gaps()) for t in timelines)),
    ]


HEADER = [
    "voice / mode",
    "first token ms",
    "first chunk ms",
    "first audio ms",
    "done s",
    "tokens/s",
    "voice RTF",
    "min lead s",
    "gaps",
]


def bench_replies(settings: Settings, prompts_file: Path = DEFAULT_PROMPTS, limit: int | None = None) -> None:
    """Every prompt through each voice, pipelined and sequential; medians / p90 and ratios."""
    prompts = load_prompts(prompts_file)[:limit]
    started = time.perf_counter()
    model = LanguageModel(settings).load()
    print(f"model: {model.source.origin if model.source else '?'}, loaded in {time.perf_counter() - started:.1f} s")
    voices = load_voices(settings)
    for notice in voices.notices:
        print(f"note: {notice}")
    pipeline = assemble(model, voices, settings).pipeline
    rows = []
    for voice in voices.voices.values():
        voice.synthesize("Warm up.")
        pipelined_runs, sequential_runs, ratios, ratios_long, first_audio_ratios = [], [], [], [], []
        for index, prompt in enumerate(prompts):
            sampling = dataclasses.replace(Sampling.from_settings(settings), seed=1000 + index)
            seq, seq_text = sequential(pipeline, model, prompt, voice, sampling)
            pipe, text = pipelined(pipeline, model, prompt, voice, sampling)
            pipelined_runs.append(pipe)
            sequential_runs.append(seq)
            ratios.append(pipe.done / seq.done)
            if pipe.first_audio and seq.first_audio:
                first_audio_ratios.append(pipe.first_audio / seq.first_audio)
            if sentences(text) >= 4:
                ratios_long.append(pipe.done / seq.done)
            print(
                f"  [{voice.key}] {prompt[:40]:40s} pipelined {pipe.done:5.2f} s, sequential {seq.done:5.2f} s, "
                f"{sentences(text)} sentences, same text: {text == seq_text}"
            )
        rows.append(_row(f"{voice.key} pipelined", pipelined_runs))
        rows.append(_row(f"{voice.key} sequential", sequential_runs))
        print(
            f"{voice.key}: pipelined/sequential total, median {statistics.median(ratios):.2f}; "
            f"for replies of 4+ sentences {statistics.median(ratios_long) if ratios_long else float('nan'):.2f} "
            f"({len(ratios_long)} replies); first audio {statistics.median(first_audio_ratios):.2f}"
        )
    print()
    print(table(HEADER, rows))
    print(f"\npeak resident memory: {peak_rss_mb():.0f} MB; {len(prompts)} prompts; torch threads {settings.threads}")
