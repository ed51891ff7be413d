"""The whole-reply WAV files offered to replay and download, and their deletion once old.

Gradio's own ``delete_cache`` misses them: it only deletes files it recorded on the page's
components, while a reply's outputs are processed by per-session copies of those components
(Gradio 6.31), whose files it never sees. So the app writes these files itself, into a folder
of its own inside Gradio's cache folder (files there are served as they are, not copied), and
deletes them once they are older than ``SPEAKSTREAM_AUDIO_FILE_MAX_AGE``. Deletion goes by age alone, so
files a stopped server left behind go too once another one runs on the same folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from speakstream.audio.segments import wav_bytes

log = logging.getLogger(__name__)

MAX_SWEEP_SECONDS = 60.0


def default_folder() -> Path:
    """A folder inside Gradio's cache (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``, as Gradio documents)."""
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio"
    return Path(gradio_cache).resolve() / "speakstream-replays"


class ReplayFiles:
    """Writes reply WAVs into a folder of this app's own and deletes each one ``max_age`` seconds
    after it was written (a background thread looks every ``min(max_age, 60)`` seconds)."""

    def __init__(self, max_age: float, folder: Path | None = None) -> None:
        self.max_age = max_age
        self.folder = folder or default_folder()
        self._closed = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_until_closed, name="replay-files", daemon=True)
        self._sweeper.start()

    def write(self, samples: np.ndarray, rate: int) -> str:
        """A new WAV file of ``samples`` (int16 mono); returns its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"reply-{uuid.uuid4().hex}.wav"
        path.write_bytes(wav_bytes(samples, rate))
        return str(path)

    def sweep(self, now: float | None = None) -> int:
        """Delete the files older than ``max_age``; returns how many went."""
        now = time.time() if now is None else now
        deleted = 0
        for path in self.folder.glob("*.wav") if self.folder.is_dir() else []:
            try:
                if now - path.stat().st_mtime > self.max_age:
                    path.unlink()
                    deleted += 1
            except FileNotFoundError:
                continue
        return deleted

    def close(self) -> None:
        """Stop sweeping (the page is closed); files left are deleted by age by the next server."""
        self._closed.set()

    def _sweep_until_closed(self) -> None:
        while not self._closed.wait(min(self.max_age, MAX_SWEEP_SECONDS)):
            try:
                self.sweep()
            except OSError as error:  # a full or read-only disk must not end the sweeping
                log.warning("Could not delete old reply audio files: %s", error)
