"""What an operator sees of a running server: Prometheus metrics at ``/metrics``, counts only.

Replies started, completed, stopped and failed; refusals by reason; replies waiting for a
place; first audio and decoding speed; models loaded; sessions kept; voices waiting for a core;
spoken messages, their recognition time, and end of speech to first audio; the voice cache's
hits, misses and bytes; the reply cache's hits and misses.
Never any text of a conversation.
Each app has a registry of its own (tests run several apps in one process).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# (A full queue is refused by Gradio before any of our code runs: watch replies_waiting instead.)
REFUSALS = ("empty", "too_long", "blocked_word", "rate_limit", "model_refused", "model_loading")
# Why a spoken message was not answered (besides the reasons above)
AUDIO_REFUSALS = ("not_audio", "sample_rate", "silent", "clipped", "no_speech", "voice_input_off")
ENDINGS = ("completed", "stopped", "failed")


class Metrics:
    """The app's counters, gauges and histograms, and their text for Prometheus."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.replies_started = Counter("speakstream_replies_started", "Replies that began", registry=self.registry)
        self.replies_ended = Counter(
            "speakstream_replies_ended", "Replies that ended, by how", ["outcome"], registry=self.registry
        )
        self.refusals = Counter(
            "speakstream_refusals", "Messages refused, by reason", ["reason"], registry=self.registry
        )
        self.replies_running = Gauge("speakstream_replies_running", "Replies being written now", registry=self.registry)
        self.replies_waiting = Gauge(
            "speakstream_replies_waiting", "Messages waiting in the queue for a reply's place", registry=self.registry
        )
        self.models_loaded = Gauge("speakstream_models_loaded", "Language models in memory", registry=self.registry)
        self.sessions = Gauge(
            "speakstream_sessions",
            "Sessions whose state the server keeps (at most SPEAKSTREAM_MAX_SESSIONS)",
            registry=self.registry,
        )
        self.voices_waiting = Gauge(
            "speakstream_voices_waiting_for_a_core",
            "Voices waiting for a CPU core (often non-zero: the machine is short of cores)",
            registry=self.registry,
        )
        self.first_audio = Histogram(
            "speakstream_first_audio_seconds",
            "Seconds from a reply's start to its first audio",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0),
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "speakstream_tokens_per_second",
            "Decoding speed of a reply",
            buckets=(2, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200),
            registry=self.registry,
        )
        self.utterances = Counter(
            "speakstream_utterances", "Spoken messages recognized (page and API)", registry=self.registry
        )
        self.transcription = Histogram(
            "speakstream_transcription_seconds",
            "Seconds the speech recognizer took for a spoken message",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0),
            registry=self.registry,
        )
        self.speech_to_audio = Histogram(
            "speakstream_speech_end_to_first_audio_seconds",
            "Seconds from the end of a spoken message (its closing silence detected) to the reply's first audio",
            buckets=(0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0),
            registry=self.registry,
        )
        self.early_answers = Counter(
            "speakstream_early_answers",
            "Answers prepared while the speaker paused: shown (the pause ended the turn) or dropped (they spoke on)",
            ["outcome"],
            registry=self.registry,
        )
        self.listening = Gauge(
            "speakstream_listening_pages", "Pages whose spoken turn the server keeps", registry=self.registry
        )
        self.own_voices = Gauge(
            "speakstream_own_voices", "Voices users made from their own clips, held in memory", registry=self.registry
        )
        self.voice_cache_hits = Counter(
            "speakstream_voice_cache_hits", "Chunks spoken from speech kept from before", registry=self.registry
        )
        self.voice_cache_misses = Counter(
            "speakstream_voice_cache_misses", "Chunks the voice had to synthesize", registry=self.registry
        )
        self.voice_cache_bytes = Gauge(
            "speakstream_voice_cache_bytes", "Memory held by the kept speech", registry=self.registry
        )
        self.reply_cache_hits = Counter(
            "speakstream_reply_cache_hits", "Replies given again at once from the reply cache", registry=self.registry
        )
        self.reply_cache_misses = Counter(
            "speakstream_reply_cache_misses",
            "Replies the cache could have kept but did not have",
            registry=self.registry,
        )
        for reason in REFUSALS + AUDIO_REFUSALS:
            self.refusals.labels(reason)
        for outcome in ENDINGS:
            self.replies_ended.labels(outcome)

    def text(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


def serve_metrics(app: Any, metrics: Metrics) -> None:
    """Answer ``/metrics`` from the app's own web server (Gradio's FastAPI app, once launched).

    Put first among the routes, before Gradio's own catch-all ones.
    """
    from fastapi.responses import Response
    from fastapi.routing import APIRoute

    def scrape() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.insert(0, APIRoute("/metrics", scrape, methods=["GET"], include_in_schema=False))
