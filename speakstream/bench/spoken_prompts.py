"""Spoken prompts as WAV files for Chromium's fake microphone: said by the bundled Piper voice or
by espeak-ng (several voices and speeds), with silence around them, and where in the file each
one's speech starts and ends (the page's clock starts at the file's time 0 when it asks for the
microphone)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from speakstream.audio.level import gain_for, with_gain

FILE_RATE = 48_000  # what Chromium's fake capture device runs at
SPEECH_LEVEL = 1e-3  # where a spoken prompt's sound starts and ends


@dataclass(frozen=True)
class Said:
    """One prompt in a file: its text, and the seconds its speech starts and ends."""

    text: str
    start: float
    end: float


def piper_speech(voice, text: str) -> np.ndarray:
    """``text`` said by a loaded Piper voice at the level its replies have, at :data:`FILE_RATE`."""
    samples = voice.synthesize(text)
    samples = with_gain(samples, gain_for(samples, voice.sample_rate)).astype(np.float32) / 32768
    return soxr.resample(samples, voice.sample_rate, FILE_RATE).astype(np.float32)


def espeak_speech(text: str, voice: str = "en-us", speed: int = 175) -> np.ndarray:
    """``text`` said by espeak-ng (``voice``, words a minute), at :data:`FILE_RATE`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "said.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
        samples, rate = soundfile.read(path, dtype="float32")
    return soxr.resample(samples, rate, FILE_RATE).astype(np.float32)


def speech_span(samples: np.ndarray) -> tuple[int, int]:
    """The first and last sample louder than :data:`SPEECH_LEVEL`."""
    loud = np.flatnonzero(np.abs(samples) > SPEECH_LEVEL)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 0)


def write_prompts(path: Path, spoken: list[tuple[str, np.ndarray]], lead: float = 0.5, gap: float = 4.0) -> list[Said]:
    """A WAV file of the ``(text, speech)`` prompts, ``lead`` s of silence first and ``gap`` s after each."""
    parts = [np.zeros(int(lead * FILE_RATE), np.float32)]
    said, at = [], len(parts[0])
    for text, samples in spoken:
        first, last = speech_span(samples)
        said.append(Said(text, (at + first) / FILE_RATE, (at + last) / FILE_RATE))
        parts += [samples, np.zeros(int(gap * FILE_RATE), np.float32)]
        at += len(samples) + int(gap * FILE_RATE)
    soundfile.write(path, np.concatenate(parts), FILE_RATE, subtype="PCM_16")
    return said


def fake_microphone(path: Path) -> list[str]:
    """Chromium's flags that make ``path`` its microphone (played once from the page's request, then silence)."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={path}%noloop",
    ]
