"""A spoken message's audio, checked and brought to 16 kHz mono, as the voice-activity model and
the recognizer hear it; anything else is refused with a message the user can act on.

Audio arrives two ways: a WAV file (the API) and the page's pieces (16 kHz 16-bit PCM, base64).
It is only ever held in memory.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

RATE = 16_000
LOWEST_RATE, HIGHEST_RATE = 8_000, 96_000
# A sample at full scale, and the share of them that makes a recording clipped.
FULL_SCALE = 0.999
CLIPPED_SHARE = 0.01
# The longest piece of a recording the page sends at once (it sends a few hundredths of a second
# at a time, more only while the server is slow to answer).
MAX_PIECE_SECONDS = 5.0
# The loudest sample of a recording with nothing in it (the noise of an idle microphone is louder).
SILENT_PEAK = 1e-3


class BadAudio(ValueError):
    """Audio that cannot be used; the text says why and what to do, ``reason`` counts it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioLimits:
    """How long a recording may be (and so how large its file), and how short."""

    max_seconds: float = 30.0
    min_seconds: float = 0.0
    shorter: str = "please say it in shorter parts"  # what to do about one too long

    @property
    def max_bytes(self) -> int:
        # 32-bit stereo at the highest rate accepted, plus room for a header
        return int(self.max_seconds * HIGHEST_RATE * 2 * 4) + 4096


def too_long(limits: AudioLimits) -> BadAudio:
    return BadAudio(f"That was longer than {limits.max_seconds:g} seconds: {limits.shorter}.", "too_long")


def decode_wav(data: bytes, limits: AudioLimits, target: int = RATE) -> np.ndarray:
    """A WAV file's samples at ``target`` Hz (16 kHz: as the recognizer hears), mono, float32,
    checked (:class:`BadAudio` says what is wrong)."""
    if not data:
        raise BadAudio("The recording is empty.", "empty")
    if len(data) > limits.max_bytes:
        raise too_long(limits)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate, frames = sound.samplerate, sound.frames
            if not LOWEST_RATE <= rate <= HIGHEST_RATE:
                raise BadAudio(
                    f"The recording's sample rate ({rate} Hz) is out of range: use "
                    f"{LOWEST_RATE:,} to {HIGHEST_RATE:,} Hz.",
                    "sample_rate",
                )
            if frames > limits.max_seconds * rate:
                raise too_long(limits)
            if frames < limits.min_seconds * rate:
                raise BadAudio(
                    f"That is {frames / rate:.1f} seconds long: record at least {limits.min_seconds:g} seconds.",
                    "too_short",
                )
            samples = sound.read(dtype="float32", always_2d=True)
    except BadAudio:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError):
        raise BadAudio("That is not audio SpeakStream can read: send a WAV file.", "not_audio") from None
    mono = samples.mean(axis=1) if samples.size else np.zeros(0, np.float32)
    checked(mono)
    return to_rate(mono, rate, target)


def decode_pcm(text: str) -> np.ndarray:
    """The page's piece of a recording: 16 kHz 16-bit little-endian PCM in base64, as float32."""
    if len(text) > MAX_PIECE_SECONDS * RATE * 2 * 4 / 3 + 4:
        raise BadAudio("That piece of audio is too long: send at most a few seconds at a time.", "too_long")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadAudio("That is not audio SpeakStream can read.", "not_audio") from None
    if len(raw) % 2:
        raise BadAudio("That is not audio SpeakStream can read.", "not_audio")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def checked(samples: np.ndarray) -> np.ndarray:
    """``samples`` when there is something to hear in them, else :class:`BadAudio`."""
    if samples.size == 0:
        raise BadAudio("The recording is empty.", "empty")
    peak = float(np.max(np.abs(samples)))
    if not np.isfinite(peak):
        raise BadAudio("That is not audio SpeakStream can read.", "not_audio")
    if peak < SILENT_PEAK:
        raise BadAudio("The recording is silent: check that the right microphone is on.", "silent")
    if np.mean(np.abs(samples) >= FULL_SCALE) > CLIPPED_SHARE:
        raise BadAudio(
            "The recording is clipped (too loud): turn the microphone's level down or move back from it.",
            "clipped",
        )
    return samples


def to_rate(samples: np.ndarray, rate: int, target: int = RATE) -> np.ndarray:
    """``samples`` resampled to ``target`` Hz."""
    if rate == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(samples, rate, target).astype(np.float32)
