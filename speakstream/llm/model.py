"""The language model in this process: loaded once, shared by every session, streaming a reply token by token.

:class:`LanguageModel` loads what :mod:`speakstream.llm.sources` found, runs it the way
``--cpu-kernels`` says (on ``auto``, the way :mod:`speakstream.llm.engine_choice` measured
fastest here) and writes each reply through a :class:`ReplyGate` that pauses, stops and
shares the cores between tokens. :class:`ChatModel` is what a reply needs of any model, this
one or one on another server (:mod:`speakstream.llm.endpoint`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from speakstream.devices import choose_device, model_dtype
from speakstream.llm.cpu import EndTokens, cpu_kernels
from speakstream.llm.prompt_cache import PromptCache
from speakstream.llm.sources import ModelLoadError, ModelSource, model_label, resolve_model_source
from speakstream.settings import Settings
from speakstream.torch_threads import CoreBudget, in_passing_thread

log = logging.getLogger(__name__)


# A chat message as the model's chat template takes it: {"role": ..., "content": ...}.
Message = dict[str, str]
MAX_PAUSE_SECONDS = 0.5
# Stands in for the newest message when finding where a prompt's repeated start ends.
PROMPT_MARKER = "\u2063SPEAKSTREAM-NEWEST-MESSAGE\u2063"


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


@dataclass
class ReplyGate:
    """What a reply's writing obeys between tokens: ``stop`` ends it; while ``pause`` is set it
    waits (``MAX_PAUSE_SECONDS`` at most), leaving the CPU to others; ``cores`` gives it the
    thread count it may use now. A model on another server obeys ``stop`` alone.

    Called after every token on the generating thread, as transformers calls a StoppingCriteria.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event | None = None
    cores: CoreBudget | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        """As transformers' stopping criteria are called: one answer per row."""
        import torch

        return torch.full((input_ids.shape[0],), self.stops(), dtype=torch.bool, device=input_ids.device)

    def stops(self) -> bool:
        """After a token: wait out a pause, take this thread's share of the cores, and say whether to stop."""
        if self.pause is not None and self.pause.is_set():
            with self.cores.resting() if self.cores is not None else contextlib.nullcontext():
                deadline = time.monotonic() + MAX_PAUSE_SECONDS
                while self.pause.is_set() and not self.stop.is_set() and time.monotonic() < deadline:
                    time.sleep(0.005)
        if self.cores is not None:
            self.cores.follow()
        return self.stop.is_set()


class ChatModel(Protocol):
    """What a reply needs of a language model, whether it runs here or on a server."""

    source: ModelSource | None

    @property
    def name(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    def stream_reply(
        self, messages: Sequence[Message], sampling: Sampling, gate: ReplyGate | None = None
    ) -> Iterator[str]: ...

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    def text_tokens(self, text: str) -> int: ...


class LanguageModel:
    """SmolLM2 (or any chat model transformers loads), loaded once and shared by every session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source: ModelSource | None = None
        self.load_seconds: float | None = None
        self.weights = "float32"
        self.device = choose_device(settings.device)
        # The CPU speed-ups are for the CPU; on a GPU transformers runs as it comes. ``auto`` is
        # decided when the model's source is known (a measurement per machine and model).
        self.kernels = cpu_kernels(settings.cpu_kernels if self.device == "cpu" else "off", settings.threads)
        self.engine = f"{self.kernels.name} kernels" if settings.cpu_kernels != "auto" else ""
        self.prompt_cache = PromptCache(settings.prompt_cache_tokens) if settings.prompt_cache_tokens > 0 else None
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        """The model's short name, as users chose it (``--llm`` or the page's model list)."""
        return model_label(self.settings.llm)

    def load(self, source: ModelSource | None = None) -> LanguageModel:
        """Resolve and load the weights; raises :class:`ModelLoadError` with a fix on failure.

        The work runs on a thread of its own (see :mod:`speakstream.torch_threads`).
        """
        return in_passing_thread(lambda: self._load(source))

    def _load(self, source: ModelSource | None) -> LanguageModel:
        import torch

        started = time.perf_counter()
        torch.set_num_threads(self.settings.threads)
        self.source = source or resolve_model_source(self.settings.llm)
        if self.settings.cpu_kernels == "auto" and self.device == "cpu":
            self._choose_engine(self.source)
        folder, gguf_file = self._cached_conversion(self.source)
        packed = self.kernels.packed_file(
            self.source.folder, self.source.gguf_file, self.settings.weights, self.settings.model_cache_dir
        )
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
            if not getattr(self._tokenizer, "chat_template", None):
                raise ModelLoadError(
                    f"The model from {self.source.origin} has no chat template; use an Instruct model."
                )
            self._model, self.weights = self.kernels.load_packed(packed) if packed else (None, "float32")
            if self._model is None:
                self._model = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=gguf_file, dtype=torch.float32, attn_implementation="sdpa"
                )
        except (OSError, ValueError, ImportError) as error:
            raise ModelLoadError(f"Could not load the model from {self.source.origin}: {error}") from error
        self._model.eval()
        if self.weights == "float32":
            if gguf_file is not None:
                self._save_conversion(self.source)
            plain = self._plain_copy()  # (what a GGUF was loaded into cannot be saved as it is)
            self._model, self.weights = self.kernels.shrink(plain, self.settings.weights, packed, self._tokenizer)
        if self.device != "cpu":  # after the float32 copy was cached
            self._model.to(device=self.device, dtype=model_dtype(self.device))
            self.weights = str(model_dtype(self.device)).removeprefix("torch.")
        self._warm_up()
        self.load_seconds = time.perf_counter() - started
        log.debug("Model files: %s", self.source.folder / (gguf_file or ""))
        log.info(
            "Language model loaded from %s in %.1f s (%s weights on the %s, %d threads)",
            self.source.origin,
            self.load_seconds,
            self.weights,
            self.device.upper() if self.device == "cpu" else f"GPU ({self.device})",
            self.settings.threads,
        )
        return self

    def _choose_engine(self, source: ModelSource) -> None:
        """``--cpu-kernels auto``: the path measured fastest here (measured now on a first start)."""
        from speakstream.llm.engine_choice import choose_engine

        choice = choose_engine(self.settings, source)
        self.settings = dataclasses.replace(self.settings, cpu_kernels=choice.kernels, weights=choice.weights)
        self.kernels = cpu_kernels(choice.kernels, self.settings.threads)
        self.engine = f"{choice.kernels} kernels, {choice.weights} (fastest here; {choice.reason()})"
        log.info("Running the model with %s %s, %s", choice.kernels, choice.weights, choice.reason())

    def _warm_up(self) -> None:
        """One token for a first greeting: the kernels are ready and the system turn is cached
        before the first user arrives."""
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        greeting = [*system, {"role": "user", "content": "Hello"}]
        warm = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=1)
        for _ in self.stream_reply(greeting, warm):
            pass

    def conversion_dir(self, source: ModelSource) -> Path:
        """Where a GGUF's plain transformers copy is kept once converted (any transformers server
        can load it from there)."""
        gguf = source.folder / str(source.gguf_file)
        stat = gguf.stat()
        return self.settings.model_cache_dir / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"

    def _cached_conversion(self, source: ModelSource) -> tuple[Path, str | None]:
        """A GGUF converted on an earlier start loads from its saved folder, skipping de-quantisation."""
        if source.gguf_file is None:
            return source.folder, None
        converted = self.conversion_dir(source)
        if (converted / "config.json").is_file():
            log.debug("Using the converted copy of %s at %s", source.gguf_file, converted)
            return converted, None
        return source.folder, source.gguf_file

    def _save_conversion(self, source: ModelSource) -> None:
        target = self.conversion_dir(source)
        partial = target.with_name(target.name + ".partial")
        try:
            shutil.rmtree(partial, ignore_errors=True)
            self._plain_copy().save_pretrained(partial)
            self._tokenizer.save_pretrained(partial)
            partial.rename(target)
            log.info("Saved the converted model to %s for faster starts", target)
        except (OSError, ValueError) as error:
            log.warning("Could not cache the converted model in %s: %s", target, error)

    def _plain_copy(self) -> Any:
        """The de-quantised model without its GGUF marker, which transformers refuses to save
        (the same tensors, not a copy)."""
        import torch

        config = copy.deepcopy(self._model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            plain = type(self._model)(config)
        plain.load_state_dict(self._model.state_dict(), assign=True)
        for name, buffer in self._model.named_buffers():  # (those outside the state, e.g. rotary frequencies)
            owner, _, attribute = name.rpartition(".")
            setattr(plain.get_submodule(owner), attribute, buffer)
        plain.generation_config = copy.deepcopy(self._model.generation_config)
        return plain.eval()

    @property
    def _end_tokens(self) -> frozenset[int]:
        """The tokens that end a reply: the model's own (its generation config) and its tokenizer's."""
        ends = self._model.generation_config.eos_token_id
        ends = [ends] if isinstance(ends, int) else list(ends or [])
        return frozenset([*ends, *([self._tokenizer.eos_token_id] if self._tokenizer.eos_token_id is not None else [])])

    @property
    def context_length(self) -> int:
        """Tokens the model can attend to: prompt and reply together."""
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    def text_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def perplexity(self, text: str) -> float:
        """How surprised the model is by ``text`` (lower is better): the check that smaller
        weights (``SPEAKSTREAM_WEIGHTS``) keep the model's quality."""
        import torch

        def score() -> float:
            ids = self._tokenizer(text, return_tensors="pt")["input_ids"][:, : self.context_length].to(self.device)
            with torch.inference_mode():
                return float(torch.exp(self._model(input_ids=ids, labels=ids).loss))

        return in_passing_thread(score, name="speakstream-score")

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt length of a conversation under the chat template, for trimming history."""
        encoded = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return len(encoded["input_ids"])

    def _known_start(self, messages: Sequence[Message], ids: list[int]) -> int:
        """How many tokens of the prompt ``ids`` come before the newest message: the part to cache.

        The chat template is rendered with a marker in place of that message; the tokens the
        prompt shares with the text before the marker are the start that later prompts repeat.
        """
        if self.prompt_cache is None:
            return 0
        probe = [*messages[:-1], {**messages[-1], "content": PROMPT_MARKER}]
        text = self._tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
        head = self._tokenizer(text.split(PROMPT_MARKER)[0], add_special_tokens=False)["input_ids"]
        shared = 0
        for ours, theirs in zip(head, ids, strict=False):
            if ours != theirs:
                break
            shared += 1
        return min(shared, len(ids) - 1)  # generate() needs at least one token of its own

    def _cache_of(self, start: list[int]) -> Any:
        """A private key/value cache for a reply: holding ``start`` (from the prompt cache,
        extended as needed), or empty without a prompt cache."""
        import torch

        if self.prompt_cache is None or not start:
            return self.kernels.new_cache(self._model.config)
        known, cache = self.prompt_cache.longest(start)
        if known < len(start):
            cache = cache if cache is not None else self.kernels.new_cache(self._model.config)
            prompt = torch.tensor([start[known:]], device=self.device)
            self._model(input_ids=prompt, cache=cache, use_cache=True, logits_to_keep=1)
            self.prompt_cache.store(start, cache)
        return cache

    def stream_reply(
        self, messages: Sequence[Message], sampling: Sampling, gate: ReplyGate | None = None
    ) -> Iterator[str]:
        """Yield the reply's text piece by piece while a background thread generates it.

        The thread obeys ``gate`` after every token; setting its ``stop`` (or closing this
        generator) ends it at its next token. An error in that thread is raised here, in the
        consumer.
        """
        import torch
        from transformers import TextIteratorStreamer

        if not self.loaded:
            raise ModelLoadError("The language model is not loaded.")
        prompt = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"].to(self.device)
        ids = prompt[0].tolist()
        known = self._known_start(messages, ids)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120.0)
        gate = gate if gate is not None else ReplyGate()
        cores = gate.cores
        ends = EndTokens(self._end_tokens, self._tokenizer.pad_token_id or self._tokenizer.eos_token_id)
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with cores.generating() if cores is not None else contextlib.nullcontext():
                    if cores is not None:
                        cores.follow()  # before reading the prompt, too: a new thread starts with the last count set
                    with torch.inference_mode():
                        cache = self._cache_of(ids[:known])
                        self.kernels.generate(self._model, prompt, cache, sampling, ends, gate, streamer)
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
                gate.stop.set()
        if failure:
            raise failure[0]
