"""Voices on another server, through OpenAI's speech API (``POST /v1/audio/speech``).

Kokoro-FastAPI, speaches, LocalAI, vLLM-Omni and another SpeakStream with ``--speech-api`` all
answer it. Each chunk is one request, read as it arrives; the start of a reply's first chunk goes
to the listener as soon as it is in. It asks for a WAV, not raw ``pcm``: raw PCM's rate is implied
(24 kHz for OpenAI) and servers of voices at other rates send it at theirs, which only a header
can say. The reply's voice thread asks for the next chunk while one plays, and requests run at
once (``remote``): the server, not this machine, does the work. A request is retried only while
no audio has come (a retry would say the start again); a failure is the voice's failure on that
chunk, which the chat notes without ever naming the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from speakstream.voices.base import Voice, VoiceLoadError

log = logging.getLogger(__name__)

PCM_RATE = 24_000  # OpenAI's rate: its voices' speech comes at this rate, others' at theirs
LEAD_SECONDS = 0.25  # of a first chunk's speech, handed to the listener before the rest has come
RETRIES = 2
RETRY_PAUSE_SECONDS = 0.2
MOST_VOICES = 24  # of a server's voices offered in the picker


class EndpointError(RuntimeError):
    """The speech server failed on a chunk; the message never names it."""


def server_voices(answer: Any) -> list[str]:
    """Voice names from a ``/v1/audio/voices`` answer, in the shapes servers give them:
    ``{"voices": [...]}`` or ``{"data": [...]}``, each a name or an object with an id or name."""
    entries = answer.get("voices", answer.get("data", [])) if isinstance(answer, dict) else answer
    names = []
    for entry in entries if isinstance(entries, list) else []:
        name = entry if isinstance(entry, str) else (entry.get("id") or entry.get("name") or entry.get("voice_id"))
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


class SpeechServer:
    """One speech server's address, key and timeout, shared by its voices."""

    def __init__(self, url: str, key: str = "", timeout: float = 15.0, model: str = "tts-1") -> None:
        self.url = url.rstrip("/").removesuffix("/v1")  # "http://host:8880" or, as OpenAI clients write it, ".../v1"
        self.key = key
        self.timeout = timeout
        self.model = model

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self) -> Any:
        import httpx

        return httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)), headers=self.headers())

    def voices(self) -> list[str]:
        """The voices the server lists (empty where it lists none); :class:`VoiceLoadError` when it
        cannot be reached at all (the message never names it; the log does)."""
        import httpx

        with self.client() as client:
            try:
                answer = client.get(f"{self.url}/v1/audio/voices")
                if answer.status_code < 400 and "json" in answer.headers.get("content-type", ""):
                    return server_voices(answer.json())[:MOST_VOICES]
                client.get(f"{self.url}/v1/models").raise_for_status()  # it answers, without a voice list
                return []
            except (httpx.HTTPError, ValueError) as error:
                log.warning("Speech server %s cannot be reached: %s: %s", self.url, error.__class__.__name__, error)
                raise VoiceLoadError(f"the speech server cannot be reached ({error.__class__.__name__})") from error


class EndpointVoice(Voice):
    """One voice of a :class:`SpeechServer`, by the name the server gives it."""

    remote = True
    sample_rate = PCM_RATE

    def __init__(self, server: SpeechServer, name: str) -> None:
        super().__init__()
        self.server = server
        self.name = name
        self.key = f"server:{name}"
        self.label = f"{name} (speech server)"
        self.engine = f"speech server {server.url} {server.model}"

    def load(self) -> EndpointVoice:
        """Nothing to load: the server listed the voice (:meth:`SpeechServer.voices`)."""
        return self

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        import httpx

        body = {
            "model": self.server.model,
            "voice": self.name,
            "input": text,
            "response_format": "wav",
            "speed": round(1.0 / length_scale, 3),
        }
        attempt = 0
        while True:
            sound = WavStream()
            led = 0  # samples handed to ``lead`` already
            try:
                with (
                    self.server.client() as client,
                    client.stream("POST", f"{self.server.url}/v1/audio/speech", json=body) as answer,
                ):
                    if answer.status_code >= 400:
                        answer.read()
                        log.warning("Speech server answered HTTP %d: %s", answer.status_code, answer.text[:300])
                        refused = EndpointError(f"the speech server refused the chunk (HTTP {answer.status_code})")
                        if answer.status_code < 500 or attempt == RETRIES:  # asking again would not help
                            raise refused
                        attempt += 1
                        time.sleep(RETRY_PAUSE_SECONDS * attempt)
                        continue
                    for piece in answer.iter_bytes():
                        sound.feed(piece)
                        if lead is not None and not led and sound.seconds() >= LEAD_SECONDS:
                            start = sound.samples()
                            led = start.size
                            lead(self._at_own_rate(start, sound.rate))
                whole = sound.samples()
                return self._at_own_rate(whole[led:], sound.rate)
            except httpx.HTTPError as error:
                log.warning("Speech server %s failed (%s: %s)", self.server.url, error.__class__.__name__, error)
                if sound.received or attempt == RETRIES:  # a retry would say the start again
                    raise EndpointError(f"the speech server failed ({error.__class__.__name__})") from error
                attempt += 1
                time.sleep(RETRY_PAUSE_SECONDS * attempt)

    def _at_own_rate(self, samples: np.ndarray, rate: int | None) -> np.ndarray:
        """Float samples at ``sample_rate`` (a server may send its voice's own rate, not OpenAI's)."""
        if not rate or rate == self.sample_rate or samples.size == 0:
            return samples
        import soxr

        return soxr.resample(samples, rate, self.sample_rate).astype(np.float32)


class WavStream:
    """A WAV file read as it arrives: 16-bit PCM after a header that says the rate (whatever
    lengths the header gives, as a stream's header cannot know them)."""

    def __init__(self) -> None:
        self.received = 0
        self.rate: int | None = None
        self._buffer = bytearray()
        self._data_at: int | None = None

    def feed(self, piece: bytes) -> None:
        self.received += len(piece)
        self._buffer += piece
        if self._data_at is None:
            self._read_header()

    def seconds(self) -> float:
        return self.samples().size / self.rate if self.rate else 0.0

    def samples(self) -> np.ndarray:
        """Every whole sample so far, float in [-1, 1]."""
        if self._data_at is None:
            return np.zeros(0, dtype=np.float32)
        end = len(self._buffer) - (len(self._buffer) - self._data_at) % 2
        return np.frombuffer(bytes(self._buffer[self._data_at : end]), dtype="<i2").astype(np.float32) / 32768.0

    def _read_header(self) -> None:
        data = bytes(self._buffer)
        if len(data) >= 4 and data[:4] != b"RIFF":
            raise EndpointError("the speech server did not send a WAV file")
        at = 12
        while len(data) >= at + 8:
            kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
            if kind == b"data":
                if self.rate is None:
                    raise EndpointError("the speech server's WAV has no format")
                self._data_at = at + 8
                return
            if len(data) < at + 8 + size:
                return  # the rest of this chunk is still to come
            if kind == b"fmt ":
                channels, rate, bits = (
                    int.from_bytes(data[at + 10 : at + 12], "little"),
                    int.from_bytes(data[at + 12 : at + 16], "little"),
                    int.from_bytes(data[at + 22 : at + 24], "little"),
                )
                if (channels, bits) != (1, 16) or not 8000 <= rate <= 96000:
                    raise EndpointError("the speech server's WAV is not 16-bit mono")
                self.rate = rate
            at += 8 + size + size % 2
