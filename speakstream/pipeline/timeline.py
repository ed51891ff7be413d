"""One reply's timeline: when its milestones were reached, and how its audio kept ahead of playback."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Timeline:
    """Seconds from the start of a reply to each milestone (None: not reached), and audio totals."""

    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    first_chunk: float | None = None
    first_ready: float | None = None  # the voice made the first audio
    first_audio: float | None = None  # ...and it was handed out (later by the cushion, if any)
    last_audio: float | None = None
    generated: float | None = None  # the model wrote its last token
    done: float | None = None
    tokens: int = 0
    voice_failures: int = 0  # chunks the voice could not speak
    audio_seconds: float = 0.0
    synthesis_seconds: float = 0.0
    cushion_seconds: float = 0.0  # the first audio was kept back this long, so the speech would not run dry
    # (seconds since start when a segment was handed out, its duration in seconds)
    segments: list[tuple[float, float]] = field(default_factory=list)
    voice: str = ""
    model: str = ""

    def now(self) -> float:
        return time.perf_counter() - self.started

    def mark(self, name: str) -> None:
        if getattr(self, name) is None:
            setattr(self, name, self.now())

    @property
    def tokens_per_second(self) -> float | None:
        """Decode speed after the first token, while the model was writing."""
        end = self.generated
        if end is None or self.first_token is None or end <= self.first_token or self.tokens < 2:
            return None
        return (self.tokens - 1) / (end - self.first_token)

    @property
    def real_time_factor(self) -> float | None:
        """Synthesis seconds per second of speech (below 1: faster than real time)."""
        return self.synthesis_seconds / self.audio_seconds if self.audio_seconds else None

    def playback_leads(self) -> list[float]:
        """Seconds of audio still queued ahead of playback when each later segment arrived.

        Playback starts with the first segment and plays segments back to back; a negative
        lead is a gap of that length (the player ran dry before the segment arrived).
        """
        leads: list[float] = []
        play_until: float | None = None
        for arrived, duration in self.segments:
            if play_until is not None:
                leads.append(play_until - arrived)
            play_until = (arrived if play_until is None else max(play_until, arrived)) + duration
        return leads

    def gaps(self) -> list[float]:
        """Lengths of the silences where the player waited for audio."""
        return [-lead for lead in self.playback_leads() if lead < 0]

    def summary(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f} ms"

        rtf = self.real_time_factor
        tps = self.tokens_per_second
        return (
            f"first token {ms(self.first_token)} · first audio {ms(self.first_audio)} · "
            f"{'-' if tps is None else f'{tps:.1f}'} tokens/s · "
            f"audio {self.audio_seconds:.1f} s · real-time factor {'-' if rtf is None else f'{rtf:.2f}'} · "
            + (f"cushion {ms(self.cushion_seconds)} · " if self.cushion_seconds else "")
            + f"voice {self.voice or 'none'} · model {self.model}"
        )
