"""Recognizing spoken messages for the whole app: one shared recognizer, and a worker that starts
on an utterance while its speaker pauses (the answer uses those words when the pause ended the turn)."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from speakstream.hearing.listener import Utterance
from speakstream.hearing.transcriber import Transcriber, Transcript


class Recognition:
    """The app's speech recognizer and its early worker."""

    def __init__(self, transcriber: Transcriber) -> None:
        self.transcriber = transcriber
        # One at a time: the recognizer runs one request at a time anyway
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="early-recognition")
        self.pending: Future[Transcript] | None = None
        self.lock = threading.Lock()

    def soon(self, samples: np.ndarray) -> Future[Transcript] | None:
        """Start recognizing ``samples`` (in the recognizer's default language); None when the
        worker is still busy with another (it never queues up: the answer then recognizes anew)."""
        with self.lock:
            if self.pending is not None and not self.pending.done():
                return None
            self.pending = self.worker.submit(self.transcriber.transcribe, samples)
            return self.pending

    def words(self, utterance: Utterance, language: str | None = None) -> Transcript:
        """The utterance's words in ``language`` where the recognizer knows it: those recognized
        early when they were in the same language, else recognized now."""
        same = self.transcriber.language_for(language) == self.transcriber.language_for(None)
        if utterance.early is not None and same:
            return utterance.early.result()
        return self.transcriber.transcribe(utterance.samples, language)
