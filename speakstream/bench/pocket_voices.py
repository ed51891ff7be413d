"""Pocket TTS voices' speed here, with untrained models (random weights: speed only, never sound).

The released weights live on the Hugging Face hub, which the machines this runs on may not
reach, so bench/untrained_pocket.py writes models of the released shapes into a hub cache of
their own: the measuring runs in a child process whose Hugging Face home is a fresh folder
(the hub library reads it once, when first imported), so nothing reaches the real cache.

For each model: the first piece of a reply's first chunk (ms until the voice hands out its
start) and the real-time factor on a reply-length chunk (compute seconds per second of
audio), float32 and int8 (torch.ao's, and torchao's where it is installed), on 1 and 2
threads alone and on 1 while the language model writes on one thread (the core budget never
gives a voice more while a model writes). Then the cost of a voice cloned from a 10 s clip:
the time to make its state and the memory that state holds per session.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from speakstream.bench.report import table
from speakstream.settings import ENV_PREFIX, Settings, load_settings

CONFIGS = ("english", "english_18m_2026-10", "english_7m_2026-10", "english_2m_2026-10")
VOICE = "alba"
REPEATS = 3
# A reply's first chunk (its first piece is what the user waits for), and a reply-length one.
FIRST_CHUNK = "Sure! Here is the answer,"
LONG_CHUNK = "The city library opens at nine in the morning and closes at six in the evening on most weekdays."
CLIP_SECONDS = 10.0
CLIP_TEXT = (
    "The city library opens at nine in the morning and closes at six in the evening. On Saturdays it "
    "stays open until noon, and on Sundays it is closed. Members can borrow up to ten books at a time."
)
WRITER_PROMPT = "Tell me a long story about a lighthouse keeper and her cat."


def bench_pocket(settings: Settings) -> None:
    """Measure in a child process with a fresh Hugging Face home, on the language model that
    ``settings.llm`` resolves to here (the child's hub cache holds only the untrained voices)."""
    from speakstream.llm.sources import resolve_model_source

    source = resolve_model_source(settings.llm)
    llm = source.folder / source.gguf_file if source.gguf_file else source.folder
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="speakstream-pocket-hf-") as home:
        env = {**os.environ, "HF_HOME": home, f"{ENV_PREFIX}LLM": str(llm)}
        code = subprocess.call([sys.executable, "-m", __name__], env=env)
    if code:
        raise RuntimeError(f"the Pocket TTS bench failed (exit status {code})")


class Writer:
    """The language model writing replies one after another on one torch thread (a thread of
    its own), while a voice is measured: what a voice meets while a reply is being written."""

    def __init__(self, model: Any, settings: Settings) -> None:
        from speakstream.llm.model import Sampling

        self.model = model
        self.sampling = Sampling.from_settings(settings)
        self.text: list[str] = []
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="speakstream-bench-writer", daemon=True)

    def _write(self) -> None:
        from speakstream.llm.model import ReplyGate
        from speakstream.torch_threads import CoreBudget

        one_thread = CoreBudget(1, per_model=1, share=False)  # the generating thread sets its count at each token
        while not self._stop.is_set():
            gate = ReplyGate(stop=self._stop, cores=one_thread)
            for piece in self.model.stream_reply([{"role": "user", "content": WRITER_PROMPT}], self.sampling, gate):
                self.text.append(piece)

    def __enter__(self) -> Writer:
        self.seconds = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.model.text_tokens("".join(self.text)) / self.seconds


@contextlib.contextmanager
def never_ending(voice: Any) -> Iterator[None]:
    """Untrained weights end their speech a few frames in (their end-of-speech score is random,
    above the threshold): without ending, a chunk is spoken for as long as its token count
    allows, so the real-time factor covers a reply's length, not the start-up alone."""
    tts = voice.model.tts
    threshold, tts.eos_threshold = tts.eos_threshold, math.inf
    try:
        yield
    finally:
        tts.eos_threshold = threshold


def _arrived(times: list[float], _piece: np.ndarray) -> None:
    times.append(time.perf_counter())


@dataclass
class Speed:
    """Medians over :data:`REPEATS`: ms until the first piece of :data:`FIRST_CHUNK`; for
    :data:`LONG_CHUNK`, compute seconds per audio second and the cores the process kept busy
    (its CPU seconds per second); and that chunk's audio seconds."""

    first_ms: float
    factor: float
    cores: float
    audio: float


def measure(voice: Any, threads: int) -> Speed:
    firsts, factors, cores, audio = [], [], [], 0.0
    for _ in range(REPEATS):
        arrived: list[float] = []
        started = time.perf_counter()
        voice.synthesize(FIRST_CHUNK, while_speaking=nullcontext(threads), lead=functools.partial(_arrived, arrived))
        firsts.append(((arrived or [time.perf_counter()])[0] - started) * 1000)
        pieces: list[np.ndarray] = []
        with never_ending(voice):
            started, busy = time.perf_counter(), time.process_time()
            rest = voice.synthesize(LONG_CHUNK, while_speaking=nullcontext(threads), lead=pieces.append)
            elapsed, busy = time.perf_counter() - started, time.process_time() - busy
        audio = (rest.size + sum(piece.size for piece in pieces)) / voice.sample_rate
        factors.append(elapsed / audio)
        cores.append(busy / elapsed)
    return Speed(statistics.median(firsts), statistics.median(factors), statistics.median(cores), audio)


def bench_weights(label: str, quantize: bool, writer_model: Any, settings: Settings) -> None:
    """One table: each model with these weights, on 1 and 2 threads alone, and on 1 while
    ``writer_model`` writes."""
    from speakstream.voices.pocket import PocketModels, PocketVoice

    models = PocketModels("cpu", quantize=quantize)
    rows = []
    for config in CONFIGS:
        started = time.perf_counter()
        try:
            voice = PocketVoice(f"pocket/{config}/{VOICE}", models).load()
        except Exception as error:  # noqa: BLE001 - a model that fails here is a finding, said as it is
            print(f"  {config} {label}: could not load: {error.__class__.__name__}: {error}")
            continue
        first_row = len(rows)
        load_seconds = time.perf_counter() - started
        for threads in (1, 2):
            voice.synthesize(FIRST_CHUNK, while_speaking=nullcontext(threads))  # warm-up
            conditions: list[tuple[str, Any]] = [("alone", nullcontext())]
            if threads == 1:  # while a model writes, a voice gets one thread
                conditions.append(("model writes", Writer(writer_model, settings)))
            for condition, during in conditions:
                with during as writing:
                    speed = measure(voice, threads)
                rate = f"{writing.tokens_per_second:.1f}" if isinstance(writing, Writer) else "-"
                rows.append(
                    [
                        config,
                        label,
                        str(threads),
                        condition,
                        f"{speed.first_ms:.0f}",
                        f"{speed.factor:.3f}",
                        f"{speed.cores:.2f}",
                        f"{speed.audio:.1f}",
                        rate,
                    ]
                )
        rows[first_row][0] += f" (load {load_seconds:.1f} s)"
        del voice
        gc.collect()
    header = [
        "model",
        "weights",
        "threads",
        "while",
        "first piece ms",
        "real-time factor",
        "cores busy",
        "audio s",
        "model tok/s",
    ]
    print(table(header, rows), flush=True)


def state_bytes(state: Any) -> int:
    """Bytes of the tensors in a (nested) model state."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.nbytes
    if isinstance(state, dict):
        return sum(state_bytes(value) for value in state.values())
    return 0


def bench_cloning() -> None:
    """A voice cloned from 10 s of speech (the bundled Piper voice's) on the full-size model:
    the time to make its state, the memory it holds per session, and its speed."""
    from speakstream.bench.untrained_pocket import piper_speech
    from speakstream.voices.pocket import PocketModels, PocketVoice

    voice = PocketVoice(f"pocket/{CONFIGS[0]}/{VOICE}", PocketModels("cpu")).load()
    clip = piper_speech(CLIP_TEXT, voice.sample_rate)[: int(CLIP_SECONDS * voice.sample_rate)]
    built_in = state_bytes(voice.model.state_for(VOICE))
    seconds, state = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        state = voice.clone_state(clip)
        seconds.append(time.perf_counter() - started)
    cloned = voice.cloned("own/bench", "Bench clip", state)
    speed = measure(cloned, 1)
    print(
        f"clone from a {clip.size / voice.sample_rate:.1f} s clip on {CONFIGS[0]} (float32): state made in "
        f"{', '.join(f'{s * 1000:.0f}' for s in seconds)} ms; it holds {state_bytes(state) / 1e6:.2f} MB per "
        f"session voice (the built-in {VOICE}, from a shorter prompt: {built_in / 1e6:.2f} MB); "
        f"the cloned voice on 1 thread: first piece {speed.first_ms:.0f} ms, "
        f"real-time factor {speed.factor:.3f} ({speed.audio:.1f} s of audio)",
        flush=True,
    )


def main() -> None:
    """The measurements (in the child process bench_pocket starts)."""
    import importlib.util
    import logging

    import torch

    from speakstream.bench.untrained_pocket import install_untrained_pocket
    from speakstream.llm.model import LanguageModel
    from speakstream.torch_threads import in_passing_thread

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pocket_tts").setLevel(logging.ERROR)  # its warning on every chunk that never ends
    settings = load_settings([])
    print(f"Pocket TTS: untrained, random weights: speed only; load average {os.getloadavg()[0]:.2f} at the start")
    started = time.perf_counter()
    in_passing_thread(lambda: install_untrained_pocket(CONFIGS, {config: [VOICE] for config in CONFIGS}))
    print(f"untrained models {', '.join(CONFIGS)} written in {time.perf_counter() - started:.0f} s", flush=True)
    model = LanguageModel(settings).load()
    with Writer(model, settings) as alone:
        time.sleep(5)
    print(
        f"language model {model.name} ({model.kernels.name} kernels, {model.weights}) on 1 thread: "
        f"{alone.tokens_per_second:.1f} tokens/s alone (model tok/s below: while the voice speaks, back to back)",
        flush=True,
    )
    print(
        f"torch {torch.__version__}; int8 by {'torchao' if importlib.util.find_spec('torchao') else 'torch.ao'} "
        "(pocket_tts uses torchao whenever it imports, else torch.ao). A voice speaks on 2 threads only alone: "
        "while a model writes, the core budget gives it one (CoreBudget.voice_speaking).\n",
        flush=True,
    )
    bench_weights("float32", False, model, settings)
    bench_weights("int8", True, model, settings)
    bench_cloning()
    print(
        "\nReal-time factor: compute seconds per audio second, measured with end-of-speech off (untrained weights "
        "end a few frames in), so a chunk speaks as long as its token count allows (tokens / 3 + 2 s): the factor "
        "is honest, the audio length is not. Cores busy: this process's CPU seconds per second meanwhile (the "
        f"writing model's too, where it writes). Load average {os.getloadavg()[0]:.2f} at the end."
    )


if __name__ == "__main__":
    main()
