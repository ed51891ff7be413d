"""Voice activity: Silero VAD (the ONNX model the ``silero-vad`` package ships) gives each 32 ms
of 16 kHz audio the probability that someone speaks in it.

One model is shared by every listening page (ONNX Runtime runs a session from several threads);
each page's stream of audio keeps its own recurrent state.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime

FRAME = 512  # samples at 16 kHz the model takes at a time
CONTEXT = 64  # samples of the frame before that it reads again


def bundled_model() -> Path:
    """The Silero VAD model inside the ``silero-vad`` package (nothing is downloaded)."""
    return Path(str(resources.files("silero_vad").joinpath("data", "silero_vad.onnx")))


class SileroVad:
    """The shared model; :meth:`stream` gives one audio stream's probabilities."""

    def __init__(self, path: Path | None = None) -> None:
        options = onnxruntime.SessionOptions()
        # Each frame is tiny: one thread, never spinning, so a listening page takes no core from a reply.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(path or bundled_model()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def stream(self) -> VadStream:
        return VadStream(self.session)


class VadStream:
    """One audio stream's speech probability, frame by frame (the model's state carried along)."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.rate = np.array(16_000, dtype=np.int64)

    def __call__(self, frame: np.ndarray) -> float:
        """The probability that ``frame`` (:data:`FRAME` samples) holds speech."""
        window = np.concatenate([self.context, frame]).astype(np.float32)[None, :]
        probability, self.state = self.session.run(None, {"input": window, "state": self.state, "sr": self.rate})
        self.context = window[0, -CONTEXT:]
        return float(probability[0, 0])
