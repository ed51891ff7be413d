"""The voice cache: what replies begin with, how often a reply's first chunk is already made, and
what that saves.

1. Openings: many replies (the eval prompts and the page's examples, a new seed each) written
   only as far as their first chunk, as the app cuts and cleans it. The replies of even seeds
   pick the lines worth making at start (first chunks seen at least twice); the odd ones,
   never seen by that choice, give the hit rate. ``--write-openings`` saves the lines to
   ``speakstream/text/openings.txt``.
2. First audio: each example prompt through the real pipeline with the default voice, with the
   same seed twice: a cache that keeps nothing (the baseline, as before the cache) and one
   filled at start-up as the app does.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from pathlib import Path

from speakstream.bench.replies import load_prompts
from speakstream.bench.report import median_p90, table
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.conversation import to_model_messages
from speakstream.text.openings import OPENINGS_FILE, lines_to_keep
from speakstream.text.speech_text import SpeechCleaner
from speakstream.text.word_filter import WordFilter
from speakstream.ui.examples import EXAMPLE_PROMPTS
from speakstream.voices import load_voices

MOST_OPENINGS = 40


def first_chunk(model: LanguageModel, settings: Settings, prompt: str, seed: int) -> str:
    """The first chunk of a reply to ``prompt``, as the voice would be asked to say it."""
    messages = [*to_model_messages([], settings.system_prompt), {"role": "user", "content": prompt}]
    sampling = dataclasses.replace(Sampling.from_settings(settings), seed=seed)
    chunker = TextChunker(rules_from_settings(settings))
    cleaner, word_filter = SpeechCleaner(), WordFilter(settings.blocked_word_list)
    stream = model.stream_reply(messages, sampling)
    try:
        for piece in stream:
            for chunk in chunker.feed(piece):
                if spoken := cleaner.clean(word_filter.mask(chunk)):
                    return spoken
    finally:
        stream.close()  # the model stops at its next token
    return next((spoken for chunk in chunker.flush() if (spoken := cleaner.clean(chunk))), "")


def measure_openings(model: LanguageModel, settings: Settings, prompts: list[str], replies: int) -> list[str]:
    """Print how replies begin and the hit rate of the lines chosen; return those lines."""
    started = time.perf_counter()
    firsts = [first_chunk(model, settings, prompts[seed % len(prompts)], seed) for seed in range(replies)]
    print(f"{replies} replies to {len(prompts)} prompts, first chunks in {time.perf_counter() - started:.0f} s")
    choosing, held_out = collections.Counter(firsts[0::2]), firsts[1::2]
    chosen = [text for text, seen in choosing.most_common(MOST_OPENINGS) if seen >= 2]
    hits = sum(first in chosen for first in held_out)
    print(f"distinct first chunks: {len(set(firsts))} of {replies}")
    print(f"lines chosen from the {len(firsts[0::2])} even-seed replies (seen twice or more): {len(chosen)}")
    print(f"hit rate on the {len(held_out)} odd-seed replies: {hits / max(1, len(held_out)):.0%} ({hits})")
    for text, seen in choosing.most_common(8):
        print(f"  {seen:3d}x  {text}")
    return chosen


def write_openings(lines: list[str], path: Path = OPENINGS_FILE) -> None:
    header = (
        "# First chunks of replies, most frequent first: the bundled SmolLM2-135M-Instruct, default settings,\n"
        "# the eval prompts and the page's examples (python -m speakstream.bench cache --write-openings).\n"
    )
    path.write_text(header + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(lines)} lines to {path}")


def bench_voice_cache(
    settings: Settings, prompts_file: Path, limit: int | None, replies: int, write: bool = False
) -> None:
    prompts = load_prompts(prompts_file)[:limit] + EXAMPLE_PROMPTS
    model = LanguageModel(settings).load()
    print(f"model: {model.source.origin if model.source else '?'} ({model.engine})")
    chosen = measure_openings(model, settings, prompts, replies)
    if write:
        write_openings(chosen)
    voices = load_voices(settings)
    for notice in voices.notices:
        print(f"note: {notice}")
    kept = dataclasses.replace(settings, voice_cache_mb=64.0)
    pipelines = {
        "no cache (baseline)": assemble(model, voices, dataclasses.replace(settings, voice_cache_mb=0.0)).pipeline,
        "filled at start": assemble(model, voices, kept).pipeline,
    }
    started = time.perf_counter()
    made = pipelines["filled at start"].keep_common_speech()
    print(f"start-up fill: {made} lines in {time.perf_counter() - started:.2f} s")
    voice = voices.get(None)
    assert voice is not None
    voice.synthesize("Warm up.")
    lines = set(lines_to_keep(voice.language))
    rows: dict[tuple[str, bool], list[float | None]] = collections.defaultdict(list)
    for index, prompt in enumerate(EXAMPLE_PROMPTS * 3):
        seed = 2000 + index
        found = first_chunk(model, settings, prompt, seed) in lines
        messages = [*to_model_messages([], settings.system_prompt), {"role": "user", "content": prompt}]
        sampling = dataclasses.replace(Sampling.from_settings(settings), seed=seed)
        for name, pipeline in pipelines.items():
            *_, final = pipeline.reply(messages, threading.Event(), pipeline.options(model, sampling=sampling))
            rows[(name, found)].append(final.timeline.first_audio)
    print(f"\nfirst audio, the page's examples x3 (new seeds) in {voice.label}:")
    print(
        table(
            ["cache", "replies", "first chunk made at start", "first audio ms (median / p90)"],
            [[name, str(len(v)), "yes" if found else "no", median_p90(v, 1000)] for (name, found), v in rows.items()],
        )
    )
