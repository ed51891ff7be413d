"""The whole-reply WAV files: written where Gradio serves them as they are, deleted once old."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import soundfile

from speakstream.audio.replay_files import ReplayFiles


def test_a_reply_file_is_a_wav_of_the_samples_and_goes_once_older_than_the_max_age(tmp_path: Path) -> None:
    files = ReplayFiles(max_age=3600, folder=tmp_path / "replays")
    try:
        samples = (np.sin(np.arange(2205) / 5) * 8000).astype(np.int16)
        path = Path(files.write(samples, 22050))
        data, rate = soundfile.read(io.BytesIO(path.read_bytes()), dtype="int16")
        assert rate == 22050 and np.array_equal(data, samples), "the samples as they are, not re-normalised"
        written = path.stat().st_mtime
        assert files.sweep(now=written + 3599) == 0 and path.exists()
        assert files.sweep(now=written + 3601) == 1 and not path.exists()
    finally:
        files.close()


def test_files_a_stopped_server_left_behind_go_too(tmp_path: Path) -> None:
    folder = tmp_path / "replays"
    folder.mkdir()
    old = folder / "reply-old.wav"
    old.write_bytes(b"RIFF")
    files = ReplayFiles(max_age=60, folder=folder)
    try:
        assert files.sweep(now=time.time() + 61) == 1 and not old.exists()
    finally:
        files.close()
