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


SPARE_TOKENS = 256


class OnnxCache:
    """The keys and values of every layer so far, in buffers with room to spare.

    ONNX Runtime's attention operator writes each new token's keys and values into the buffer
    it reads the earlier ones from (the same memory bound as its input and its output), so a
    step copies nothing; returned as new arrays, the whole cache of every layer would be copied
    for every token, its cost growing with the conversation. The bindings of those buffers to a
    session are kept too: made afresh every token, they ate most of what the copy cost.
    """

    def __init__(self) -> None:
        self.rooms: dict[str, np.ndarray] = {}
        self.filled = 0
        self._bindings: dict[int, Any] = {}

    def get_seq_length(self) -> int:
        return self.filled

    def binding(self, session: Any, tokens: int, names: list[str], shape: tuple[int, int, int]) -> Any:
        """``session``'s binding of each layer's buffer (``names``; ``shape``: batch, heads, head size)
        as both its past and its present, with room for ``tokens`` more."""
        needed = self.filled + tokens
        if not self.rooms or next(iter(self.rooms.values())).shape[2] < needed:
            batch, heads, size = shape
            roomier = {name: np.zeros((batch, heads, needed + SPARE_TOKENS, size), np.float32) for name in names}
            for name, room in self.rooms.items():
                roomier[name][:, :, : self.filled] = room[:, :, : self.filled]
            self.rooms, self._bindings = roomier, {}
        if id(session) not in self._bindings:
            import onnxruntime

            binding = session.io_binding()
            binding.bind_output("logits")  # first: get_outputs() lists the outputs in the order first bound
            for name, room in self.rooms.items():
                shared = onnxruntime.OrtValue.ortvalue_from_numpy(room)
                binding.bind_ortvalue_input(name, shared)
                binding.bind_ortvalue_output(name.replace("past_key_values.", "present."), shared)
            self._bindings[id(session)] = binding
        return self._bindings[id(session)]

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxCache:
        """A copy of the filled part only: stored prompt starts keep no spare room."""
        twin = OnnxCache()
        twin.rooms = {name: np.ascontiguousarray(room[:, :, : self.filled]) for name, room in self.rooms.items()}
        twin.filled = self.filled
        return twin


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
        head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self._kv_shape = (1, config.num_key_value_heads, head_size)

    def _session(self, threads: int) -> Any:
        """A session on ``threads`` threads (each holds its own copy of the weights: a thread count is
        fixed per session).

        The session on all the model's threads runs only while the core budget gives the model
        every core it may use (no voice speaking, no page showing a reply on this machine): its
        workers spin between products, which saves waking them for each of the few hundred
        products of a token. On fewer threads they sleep, leaving the cores to whoever shares
        them. (Spinning lost while torch's own idle workers spun too: see ``OnnxKernels.own_work``.)
        """
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                spin = "1" if threads == self.threads else "0"
                options.add_session_config_entry("session.intra_op.allow_spinning", spin)
                self._sessions[threads] = onnxruntime.InferenceSession(
                    str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[threads]

    def eval(self) -> OnnxCausalLM:
        return self

    def new_cache(self) -> OnnxCache:
        return OnnxCache()

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
        cache = cache if cache is not None else OnnxCache()
        ids = input_ids.numpy().astype(np.int64)
        total = cache.filled + ids.shape[1]
        # As many threads as the core budget gave this thread for torch (CoreBudget.follow).
        session = self._session(max(1, min(self.threads, torch.get_num_threads())))
        binding = cache.binding(session, ids.shape[1], self._past, self._kv_shape)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", np.ones((1, total), dtype=np.int64))
        binding.bind_output("logits")  # ONNX Runtime allocates them afresh: their shape changes
        session.run_with_iobinding(binding)
        logits = binding.get_outputs()[0].numpy()
        if use_cache:
            cache.filled = total
        scores = torch.from_numpy(logits[:, -logits_to_keep:] if logits_to_keep else logits)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(scores[0, :-1].float(), labels[0, 1:])
        return OnnxOutput(scores, loss)
