"""The model run by ONNX Runtime: 8-bit weights multiplied by its own CPU kernels (MLAS ``MatMulNBits``).

torch's 4-bit and 8-bit kernels are fast where the CPU has AVX-512 and slow elsewhere (on
an AVX2-only host they alone cost more than llama.cpp's whole step); ONNX Runtime's are
tuned for AVX2, AVX-512 and ARM alike. Which is faster on a machine is measured there
(:mod:`speakstream.llm.engine_choice`), not assumed.

The ONNX model is written once from the transformers folder by ONNX Runtime GenAI's model
builder (its fused attention and layer-norm operators, every linear layer and the output
head 8-bit in blocks of 32, perplexity within 2% of float32) and kept in the cache folder.
It runs on a plain ``onnxruntime.InferenceSession``, behind the call that the decoding loop
of :class:`speakstream.llm.cpu.FastKernels` makes of a transformers model, so sampling, the
repetition penalty, stopping, the prompt cache and the streamer are the same code for both.
(The builder's 4-bit mode re-quantizes the GGUF's 4-bit values onto another grid, which
costs about 30% perplexity; an exact copy of them needs fractional zero points, which ONNX
Runtime computes on a slow path.)
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakstream.llm.sources import ModelLoadError

log = logging.getLogger(__name__)

PRECISION = "int8"
BUILD_TIMEOUT_SECONDS = 600


class OnnxBuildError(ModelLoadError):
    """The ONNX model could not be written (the builder missing or failing)."""


def builder_version() -> str:
    """The version of the ONNX Runtime GenAI model builder ("missing": none installed)."""
    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError:
        return "missing"


def build_onnx(model: Any, tokenizer: Any, target: Path) -> None:
    """Write ``model`` (a transformers model with its config and ``tokenizer``) as an ONNX model into ``target``.

    The builder runs in a process of its own: it takes about 15 s and a few hundred MB, none
    of which stays in the server.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="speakstream-onnx-") as scratch:
        source, output = Path(scratch) / "source", Path(scratch) / "out"
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
        command += ["-i", str(source), "-o", str(output), "-p", PRECISION, "-e", "cpu", "-c", str(Path(scratch) / "c")]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise OnnxBuildError(f"the ONNX model builder did not finish: {error}") from error
        if done.returncode != 0 or not (output / "model.onnx").is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise OnnxBuildError(f"the ONNX model builder failed: {tail[0]}")
        for older in target.parent.glob(target.name.rsplit("-", 1)[0] + "-*"):
            shutil.rmtree(older, ignore_errors=True)
        partial = target.with_name(target.name + ".partial")
        partial.mkdir()
        for name in ("model.onnx", "model.onnx.data"):
            shutil.move(output / name, partial / name)
        model.config.save_pretrained(partial)
        model.generation_config.save_pretrained(partial)
        partial.rename(target)


def load_onnx(folder: Path, threads: int) -> OnnxCausalLM | None:
    """The ONNX model kept in ``folder``, on ``threads`` threads (None: there is none)."""
    if not (folder / "model.onnx").is_file():
        return None
    from transformers import AutoConfig, GenerationConfig

    model = OnnxCausalLM(folder, AutoConfig.from_pretrained(folder), GenerationConfig.from_pretrained(folder), threads)
    log.info("Loaded the ONNX model kept from an earlier start")
    return model


@dataclass
class OnnxCache:
    """The keys and values of every layer so far, as the ONNX model takes and returns them."""

    arrays: dict[str, np.ndarray]

    def get_seq_length(self) -> int:
        return next(iter(self.arrays.values())).shape[2] if self.arrays else 0


@dataclass
class OnnxOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class OnnxCausalLM:
    """An ONNX causal language model, called as the decoding loop calls a transformers one."""

    def __init__(self, folder: Path, config: Any, generation_config: Any, threads: int) -> None:
        self.folder = folder
        self.config = config
        self.generation_config = generation_config
        self.threads = max(1, threads)
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        # Alone, and beside a voice that speaks (CoreBudget leaves the model one core fewer): made
        # now, not in the middle of a reply (other counts, rarer, on first use).
        session = self._session(self.threads)
        self._session(max(1, self.threads - 1))
        self._past = [item.name for item in session.get_inputs() if item.name.startswith("past_key_values.")]
        self._outputs = ["logits", *(name.replace("past_key_values.", "present.") for name in self._past)]
        heads = config.num_key_value_heads
        head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self._empty = np.zeros((1, heads, 0, head_size), dtype=np.float32)

    def _session(self, threads: int) -> Any:
        """A session on ``threads`` threads (each holds its own copy of the weights: a thread count is
        fixed per session).

        Its workers sleep rather than spin between products: this loop runs beside the thread
        that streams the text, and a voice or a browser may share the cores (spinning workers
        wrote a third fewer tokens a second here than sleeping ones).
        """
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._sessions[threads] = onnxruntime.InferenceSession(
                    str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[threads]

    def eval(self) -> OnnxCausalLM:
        return self

    def new_cache(self) -> OnnxCache:
        return OnnxCache({})

    def __call__(
        self,
        input_ids: torch.Tensor,
        cache: OnnxCache | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
        labels: torch.Tensor | None = None,
    ) -> OnnxOutput:
        """Read ``input_ids`` after what ``cache`` holds (and add them to it); the logits of the last
        ``logits_to_keep`` positions (0: all), and with ``labels`` the mean next-token loss."""
        cache = cache if cache is not None else OnnxCache({})
        ids = input_ids.numpy().astype(np.int64)
        total = cache.get_seq_length() + ids.shape[1]
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, total), dtype=np.int64)}
        feeds |= {name: cache.arrays.get(name, self._empty) for name in self._past}
        # As many threads as the core budget gave this thread for torch (CoreBudget.follow).
        session = self._session(max(1, min(self.threads, torch.get_num_threads())))
        logits, *present = session.run(self._outputs, feeds)
        if use_cache:
            cache.arrays = dict(zip(self._past, present, strict=True))
        scores = torch.from_numpy(logits[:, -logits_to_keep:] if logits_to_keep else logits)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(scores[0, :-1].float(), labels[0, 1:])
        return OnnxOutput(scores, loss)
