"""Small helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from speakstream.bench.browser import free_port
from speakstream.pipeline import ReplyPipeline
from speakstream.settings import Settings
from speakstream.voices import Voice

__all__ = ["SilentVoice", "free_port", "generation_threads", "serve", "wait_until"]


def wait_until(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("speakstream-")]


class SilentVoice(Voice):
    """A test voice: silence of a plausible length (60 ms a character), after ``delay`` seconds a character."""

    key = "silent"
    label = "Silent (tests)"
    sample_rate = 22050

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.spoken: list[str] = []

    def _synthesize(self, text: str, length_scale: float) -> np.ndarray:
        time.sleep(self.delay * len(text))
        self.spoken.append(text)
        return np.full(int(0.06 * len(text) * self.sample_rate * length_scale), 0.01, dtype=np.float32)


@contextmanager
def serve(pipeline: ReplyPipeline, settings: Settings) -> Iterator[str]:
    """The app's page for ``pipeline``, served in this process on ``settings.port``; yields its URL."""
    from speakstream.ui import build_ui

    demo = build_ui(pipeline, settings)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=settings.port, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}/"
    finally:
        demo.close()
