"""Faster decoding on a CPU, in place of parts of transformers, behind one switch: ``--cpu-kernels``.

``torch``: smaller weights multiplied by torch's CPU kernels, with each plain Llama decoder layer
rebuilt from fewer, larger products (:mod:`.quantize`, :mod:`.decoder_layer`); a key/value
cache that grows in place (:mod:`.kv_cache`); each token drawn from the 50 candidates rather
than the whole vocabulary (:mod:`.sampler`); and a decoding loop of its own in place of
``generate()``, doing per token only what a reply needs (:meth:`FastKernels.generate`).
``onnx``: the same decoding loop over the model run by ONNX Runtime (:mod:`.onnx_runtime`).
``off``: plain transformers (float32 weights, its own cache, sampling and ``generate()``),
for the day a torch or transformers upgrade breaks any of the above: ship with the switch
off, the app works the same, only slower. ``auto``: whichever of these measured fastest on
this machine (:mod:`speakstream.llm.engine_choice`).

Everything the language model needs from this package goes through :func:`cpu_kernels`.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # (model.py imports this module)
    from speakstream.llm.model import Sampling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndTokens:
    """The model's tokens that end a reply, and the one transformers pads with."""

    end: frozenset[int]
    pad: int | None


def kept_stem(folder: Path, gguf_file: str | None) -> str:
    """The start of a kept copy's name: the model's folder, and its GGUF file where a folder has
    several (so replacing one model's older copies never deletes another's)."""
    return f"{folder.name}-{Path(gguf_file).stem}" if gguf_file else folder.name


def kept_name(folder: Path, gguf_file: str | None, *versions: str) -> str:
    """A digest that changes with the weight files (the GGUF file or the safetensors), the
    ``versions`` given and this package's code, so a stale kept copy is never loaded."""
    digest = hashlib.sha256()
    for part in (str(folder.resolve()), *versions):
        digest.update(part.encode())
    weight_files = [folder / gguf_file] if gguf_file else sorted(folder.glob("*.safetensors"))
    for file in weight_files + sorted(Path(__file__).parent.glob("*.py")):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class FastKernels:
    """``--cpu-kernels torch``."""

    name = "torch"

    def packed_file(self, folder: Path, gguf_file: str | None, weights: str, cache: Path) -> Path | None:
        """Where the shrunk model from ``folder`` is kept between starts (None: float32, nothing to keep)."""
        from speakstream.llm.cpu.quantize import choose_weights

        chosen = choose_weights(weights)
        if chosen == "float32":
            return None
        import transformers

        digest = kept_name(folder, gguf_file, chosen, torch.__version__, transformers.__version__)
        return cache / "packed" / f"{kept_stem(folder, gguf_file)}-{chosen}-{digest}.pt"

    def load_packed(self, path: Path) -> tuple[Any, str]:
        """The model kept at ``path`` and its weights' kind, or (None, "float32") when there is none."""
        if not path.is_file():
            return None, "float32"
        try:
            # Written by this server into its own cache folder (save_packed), never from elsewhere.
            model = torch.load(path, weights_only=False)
        except Exception as error:  # noqa: BLE001 - a broken copy is rebuilt, never fatal
            log.warning("Could not read the kept copy %s (%s); building it again", path.name, error)
            path.unlink(missing_ok=True)
            return None, "float32"
        log.info("Loaded the model's %s weights kept from an earlier start", path.stem.rsplit("-", 2)[-2])
        return model, path.stem.rsplit("-", 2)[-2]

    def save_packed(self, model: Any, path: Path) -> None:
        """Keep the shrunk ``model`` at ``path`` for the next start (and drop older copies of it)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for older in path.parent.glob(path.stem.rsplit("-", 1)[0] + "-*.pt"):
                older.unlink(missing_ok=True)
            partial = path.with_suffix(".partial")
            torch.save(model, partial)
            partial.rename(path)
        except OSError as error:
            log.warning("Could not keep the shrunk model in %s: %s", path.parent, error)

    def shrink(self, model: Any, weights: str, packed: Path | None, tokenizer: Any = None) -> tuple[Any, str]:
        """Make ``model``'s weights ``weights`` (``auto``: int4) and keep it at ``packed`` for the
        next start; returns it and the kind used (float32 when this torch build lacks the kernels)."""
        from speakstream.llm.cpu.quantize import choose_weights, kernels_work, quantize

        chosen = choose_weights(weights)
        if chosen == "float32" or not kernels_work(chosen):
            return model, "float32"
        quantize(model, chosen)
        if packed is not None:
            self.save_packed(model, packed)
        return model, chosen

    def new_cache(self, config: Any) -> Any:
        from speakstream.llm.cpu.kv_cache import new_cache

        return new_cache(config)

    def own_work(self) -> AbstractContextManager[None]:
        """Where the loop's own torch work (the penalty, the sampler) runs: on the model's threads."""
        return nullcontext()

    def generate(
        self, model: Any, prompt: Any, cache: Any, sampling: Sampling, ends: EndTokens, gate: Any, streamer: Any
    ) -> None:
        """Write the reply into ``streamer`` token by token, ``gate`` deciding after each whether to go on.

        What ``generate()`` does for this model and these settings, and no more: the repetition
        penalty on every token seen so far (as transformers applies it), then the sampler (or the
        likeliest token at temperature 0); the streamer gets the prompt first (it skips it), then
        each token; the end of text or ``max_new_tokens`` ends it. For the same seed the text is
        the same as ``generate()``'s (tests/test_cpu_kernels.py).
        """
        from speakstream.llm.cpu.sampler import TopKTopPSampler

        draw = None
        if sampling.temperature > 0:
            generator = None if sampling.seed is None else torch.Generator().manual_seed(sampling.seed)
            draw = TopKTopPSampler(sampling.temperature, sampling.top_p, generator=generator).draw
        seen = prompt[0]
        streamer.put(prompt)
        done = cache.get_seq_length()
        logits = model(input_ids=prompt[:, done:], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
        for _ in range(sampling.max_new_tokens):
            with self.own_work():
                scores = logits.float()
                if sampling.repetition_penalty != 1.0:
                    penalised = scores.gather(-1, seen[None])
                    penalised = torch.where(
                        penalised < 0, penalised * sampling.repetition_penalty, penalised / sampling.repetition_penalty
                    )
                    scores = scores.scatter(-1, seen[None], penalised)
                token = draw(scores) if draw else scores.argmax(-1, keepdim=True)
            streamer.put(token[0])
            if int(token) in ends.end or gate.stops():
                break
            seen = torch.cat([seen, token[0]])
            logits = model(input_ids=token, cache=cache, use_cache=True).logits[:, -1, :]
        streamer.end()


class OnnxKernels(FastKernels):
    """``--cpu-kernels onnx``: the decoding loop of ``torch`` over the model run by ONNX Runtime."""

    name = "onnx"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def packed_file(self, folder: Path, gguf_file: str | None, weights: str, cache: Path) -> Path | None:
        """The folder of the ONNX model written from ``folder``'s model (its weights are always int8)."""
        import onnxruntime
        import transformers

        from speakstream.llm.cpu.onnx_runtime import PRECISION, builder_version

        versions = (PRECISION, onnxruntime.__version__, builder_version(), transformers.__version__)
        digest = kept_name(folder, gguf_file, *versions)
        return cache / "onnx" / f"{kept_stem(folder, gguf_file)}-{PRECISION}-{digest}"

    def load_packed(self, path: Path) -> tuple[Any, str]:
        from speakstream.llm.cpu.onnx_runtime import PRECISION, load_onnx

        model = load_onnx(path, self.threads)
        return (model, PRECISION) if model is not None else (None, "float32")

    def shrink(self, model: Any, weights: str, packed: Path | None, tokenizer: Any = None) -> tuple[Any, str]:
        """Write the model (with its ``tokenizer``, which the builder reads) as ONNX into ``packed``
        and run that instead."""
        from speakstream.llm.cpu.onnx_runtime import build_onnx

        assert packed is not None
        build_onnx(model, tokenizer, packed)
        return self.load_packed(packed)

    def new_cache(self, config: Any) -> Any:
        from speakstream.llm.cpu.onnx_runtime import OnnxCache

        return OnnxCache()

    def own_work(self) -> AbstractContextManager[None]:
        """On one torch thread: torch's OpenMP workers, idle otherwise, spin after each parallel step
        on the cores ONNX Runtime's workers need."""
        from speakstream.torch_threads import one_torch_thread

        return one_torch_thread()


class PlainTransformers:
    """``--cpu-kernels off``: transformers as it comes."""

    name = "off"

    def packed_file(self, folder: Path, gguf_file: str | None, weights: str, cache: Path) -> Path | None:
        return None

    def shrink(self, model: Any, weights: str, packed: Path | None, tokenizer: Any = None) -> tuple[Any, str]:
        return model, "float32"

    def new_cache(self, config: Any) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=config)

    def sampling(self, temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
        """transformers' own sampling. It has no per-call random generator: a seed seeds torch's
        process-wide one (replies running at once then share it)."""
        if temperature <= 0:
            return {"do_sample": False}
        if seed is not None:
            torch.manual_seed(seed)
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 50}

    def generate(
        self, model: Any, prompt: Any, cache: Any, sampling: Sampling, ends: EndTokens, gate: Any, streamer: Any
    ) -> None:
        """transformers' ``generate()``, with ``gate`` as its stopping criterion."""
        from transformers import StoppingCriteriaList

        model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            cache=cache,
            streamer=streamer,
            max_new_tokens=sampling.max_new_tokens,
            repetition_penalty=sampling.repetition_penalty,
            stopping_criteria=StoppingCriteriaList([gate]),
            pad_token_id=ends.pad,
            **self.sampling(sampling.temperature, sampling.top_p, sampling.seed),
        )


CpuKernels = FastKernels | OnnxKernels | PlainTransformers


def cpu_kernels(setting: str, threads: int = 1) -> CpuKernels:
    """The CPU path ``--cpu-kernels`` names (``threads``: what ONNX Runtime runs a model on)."""
    if setting == "off":
        return PlainTransformers()
    return OnnxKernels(threads) if setting == "onnx" else FastKernels()
