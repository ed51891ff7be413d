"""Micro-benchmarks: the chunker's cost per token, and each voice's speed."""

from __future__ import annotations

import functools
import statistics
import time

import numpy as np

from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings

SAMPLE_REPLY = (
    "Sure! Here are three tips for sleeping better:\n1. Keep a regular schedule, even on weekends.\n"
    "2. Avoid screens for an hour before bed; the blue light keeps you awake.\n3. Keep your room cool, "
    "dark and quiet. Dr. Smith at the U.S. Sleep Institute says 7.5 hours is ideal, e.g. from 10:30 p.m. "
    "to 6:00 a.m. Read more at https://example.com/sleep. A good mattress costs about $1,000, but it "
    "lasts for years... Sweet dreams!"
) * 4


def _tokens(text: str) -> list[str]:
    """Split like a tokenizer streamer: words with their leading space, punctuation apart."""
    pieces: list[str] = []
    word = ""
    for ch in text:
        if ch.isalnum():
            word += ch
            continue
        if word:
            pieces.append(word)
            word = ""
        pieces.append(ch)
    return [*pieces, word] if word else pieces


def bench_chunker(settings: Settings, repeats: int = 200) -> None:
    """Cost of the chunker per streamed token, next to the model's time per token (about 35 ms)."""
    tokens = _tokens(SAMPLE_REPLY)
    rules = rules_from_settings(settings)
    timings = []
    for _ in range(repeats):
        chunker = TextChunker(rules)
        started = time.perf_counter()
        for token in tokens:
            chunker.feed(token)
        chunker.flush()
        timings.append((time.perf_counter() - started) / len(tokens))
    per_token = statistics.median(timings)
    print(
        f"chunker: {len(tokens)} tokens a reply, median {per_token * 1e6:.1f} µs per token "
        f"(p90 {statistics.quantiles(timings, n=10)[-1] * 1e6:.1f} µs); "
        f"{per_token / 0.035 * 100:.3f}% of a 35 ms decode step"
    )


SHORT_CHUNK = "Hello there, how are you?"
LONG_CHUNK = "The robot walked into the quiet studio, picked up a brush, and painted the sky a deep, calm blue."
# The short and long chunks in the other languages the offered voices speak.
OTHER_LANGUAGES = {
    "de": (
        "Der Himmel ist blau,",
        "Sonnenlicht wird von den Molekülen der Luft gestreut, und das kurzwellige blaue Licht am stärksten.",
    ),
    "fr": (
        "Le ciel est bleu,",
        "La lumière du soleil est diffusée par les molécules de l'air, et le bleu, plus court, davantage.",
    ),
    "es": (
        "El cielo es azul,",
        "La luz del sol se dispersa en las moléculas del aire, y la luz azul, más corta, se dispersa más.",
    ),
}


def _arrived(log: list[tuple[float, int]], samples: np.ndarray) -> None:
    log.append((time.perf_counter(), samples.size))


def bench_voices(settings: Settings, repeats: int = 5) -> None:
    """Each voice's real-time factor and latency for a short (a first) and a long chunk: the
    start-up voices, then every offered Piper voice that can be fetched (its language's text)."""
    import dataclasses

    from speakstream.voices import VoiceLoadError, load_voices

    for threads in sorted({1, 2, settings.tts_threads}):
        voices = load_voices(dataclasses.replace(settings, tts_threads=threads))
        for notice in voices.notices:
            print(f"  note: {notice}")
        offered = []
        for name in voices.offered:
            try:
                offered.append(voices.request(name).result())
            except VoiceLoadError as error:
                print(f"  note: {name}: {error}")
        for voice in [*voices.voices.values(), *offered]:
            voice.synthesize("Warm up.")
            short, long = OTHER_LANGUAGES.get(voice.language, (SHORT_CHUNK, LONG_CHUNK))
            for name, text in (("short", short), ("long", long)):
                latencies, rtfs, firsts = [], [], []
                for _ in range(repeats):
                    # A reply's first chunk is short and asked for its start early (glow-tts gives it).
                    lead: list[tuple[float, int]] = []
                    started = time.perf_counter()
                    samples = voice.synthesize(
                        text, lead=functools.partial(_arrived, lead) if name == "short" else None
                    )
                    elapsed = time.perf_counter() - started
                    latencies.append(elapsed)
                    firsts.append(lead[0][0] - started if lead else elapsed)
                    rtfs.append(elapsed / ((len(samples) + sum(size for _, size in lead)) / voice.sample_rate))
                print(
                    f"voice {voice.key:9s} threads={threads} {name:5s} chunk ({len(text):3d} chars): "
                    f"latency median {statistics.median(latencies) * 1000:5.0f} ms "
                    f"(first sound ready {statistics.median(firsts) * 1000:4.0f} ms), "
                    f"real-time factor median {statistics.median(rtfs):.3f}"
                )
