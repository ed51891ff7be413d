"""Kyutai's Pocket TTS voices: built-in voices in seven languages, and voices cloned from a clip.

A voice is named ``pocket/<model>/<voice>``: ``<model>`` one of the package's configs (a
language, e.g. ``english``, ``french``, or a small English model such as
``english_18m_2026-10``), ``<voice>`` one of its built-in voices (``alba``, ``estelle``, ...).
The model's weights, tokenizer and the built-in voices' states come from the Hugging Face hub at
the revisions the package pins, through the package's own loader; one model serves every voice
of its language (:class:`PocketModels`). The weights that clone voices are gated on the hub:
where only the others can be had, the built-in voices speak and cloning says why it is off.

Pocket TTS streams: it decodes its speech in 80 ms frames while it writes the next ones, so a
reply's first chunk is handed out in growing pieces as they come. It reads our chunks as they
are (its own sentence splitting is given room for any chunk we make) and has no speaking rate.
It writes and decodes on two threads of its own at once, each on the thread count the CPU
budget gave the voice (torch's count for new threads is process-wide: another thread setting
its own count at that moment can change theirs), so one voice keeps more than its core busy
(``bench pocket`` measures how much). Beyond ``TTSModel``'s methods it relies on the package's
``CONFIGS_DIR``, ``download_if_necessary`` and ``has_voice_cloning``: pocket-tts is pinned and
the tests run it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speakstream.torch_threads import in_passing_thread
from speakstream.voices.base import Voice, VoiceLoadError

log = logging.getLogger(__name__)

NAME = re.compile(r"^pocket/(?P<model>[a-z0-9_\-]+)/(?P<voice>[a-z_]+)$")
# Languages by the start of a config's name: (two letters, the word a picker shows).
LANGUAGES = {
    "english": ("en", "English"),
    "french": ("fr", "French"),
    "german": ("de", "German"),
    "italian": ("it", "Italian"),
    "portuguese": ("pt", "Portuguese"),
    "spanish": ("es", "Spanish"),
    "dutch": ("nl", "Dutch"),
}
# The start of a reply's first chunk is handed out once this much is made, then again each time
# as much as was handed out so far is ready (few pieces, each covering the making of the next).
LEAD_SECONDS = 0.24
# Room for Pocket TTS's own sentence splitting: our chunks (100 characters at most) stay whole.
MAX_TOKENS = 1000
UNTRAINED = {"speakstream": "untrained"}  # the metadata of the weights bench/untrained_pocket.py writes
GATED = (
    "this server has only the Pocket TTS weights without voice cloning (the cloning weights are gated: "
    "accept the terms at https://huggingface.co/kyutai/pocket-tts and log in with `hf auth login`)"
)


def describe(name: str) -> tuple[str, str]:
    """The label a picker shows for voice ``name``, and the language it speaks (two letters)."""
    found = NAME.match(name)
    if found is None:
        return name, "en"
    model = found["model"]
    code, language = LANGUAGES.get(model.split("_")[0], ("en", model))
    size = "" if model in LANGUAGES else f", {model}"
    return f"{found['voice'].replace('_', ' ').title()} ({language}; Pocket TTS{size})", code


def is_pocket(name: str) -> bool:
    return NAME.match(name) is not None


@dataclass
class PocketModel:
    """One loaded Pocket TTS model, shared by the voices of its language. They speak one at a time
    (the package does not promise a model is safe to run from two threads): ``lock`` is each of
    their voice locks, so a voice waiting for the model holds no core meanwhile."""

    name: str
    tts: Any  # pocket_tts.TTSModel
    untrained: bool  # random weights (bench/untrained_pocket.py): noise, labelled so
    cloning: bool  # the weights that clone voices were had
    engine: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def sample_rate(self) -> int:
        return int(self.tts.sample_rate)

    def state_for(self, prompt: Any, threads: int = 1) -> Any:
        """The model's state after hearing ``prompt``: a built-in voice's name, or a [channels, samples]
        tensor at the model's sample rate (the caller holds ``lock``). Runs on a passing thread (see
        speakstream.torch_threads) on ``threads`` threads."""
        import torch

        def encode() -> Any:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return self.tts.get_state_for_audio_prompt(prompt)

        return in_passing_thread(encode, name="speakstream-voice-prompt")


class PocketModels:
    """Pocket TTS models by config name, loaded once and shared while any voice holds one."""

    def __init__(self, device: str = "cpu", quantize: bool = False) -> None:
        self.device = device
        self.quantize = quantize and device == "cpu"  # torch.ao's int8 layers have no CUDA kernels
        self._models: weakref.WeakValueDictionary[str, PocketModel] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, name: str) -> PocketModel:
        """Model ``name`` (a package config), loading it if no voice holds it; :class:`VoiceLoadError` says why not."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                model = in_passing_thread(lambda: self._load(name))
                self._models[name] = model
            return model

    def _load(self, name: str) -> PocketModel:
        try:
            from pocket_tts import TTSModel
            from pocket_tts.utils.config import CONFIGS_DIR
        except ImportError as error:
            raise VoiceLoadError(f"pocket-tts is not installed or cannot import ({error})") from error
        if not (CONFIGS_DIR / f"{name}.yaml").is_file():
            raise VoiceLoadError(f"Pocket TTS has no model {name!r}")
        try:
            tts = TTSModel.load_model(language=name, quantize=self.quantize)
        except Exception as error:  # the hub's own error types (offline, gated, not found): details to the log
            log.warning("Could not load the Pocket TTS model %s: %s", name, error)
            raise VoiceLoadError(
                f"could not fetch Pocket TTS's {name} model from the Hugging Face hub ({error.__class__.__name__})"
            ) from error
        if self.device != "cpu":
            tts = tts.to(self.device)
        version = importlib.metadata.version("pocket-tts")
        quantized = " int8" if self.quantize else ""
        return PocketModel(name, tts, _untrained(tts), tts.has_voice_cloning, f"pocket-tts {version} {name}{quantized}")


def _untrained(tts: Any) -> bool:
    """Whether the weights loaded are the random ones bench/untrained_pocket.py writes (their metadata says so)."""
    import safetensors
    from pocket_tts.utils.utils import download_if_necessary

    config = tts.config
    source = config.weights_path if tts.has_voice_cloning else config.weights_path_without_voice_cloning
    if source is None:  # the package's configs all name their weights: none means random ones
        return True
    with safetensors.safe_open(str(download_if_necessary(source)), framework="pt") as weights:
        return UNTRAINED.items() <= (weights.metadata() or {}).items()


class PocketVoice(Voice):
    """A Pocket TTS voice: a model and the state a voice prompt left it in (a built-in voice's, or
    one made from a user's clip, :meth:`cloned`). It speaks on one thread (and the decoder's
    beside it): two measured no faster."""

    speaking_rate_works = False

    def __init__(self, name: str, models: PocketModels) -> None:
        super().__init__()
        found = NAME.match(name)
        if found is None:
            raise VoiceLoadError(f"{name!r} is not a Pocket TTS voice name (like pocket/english/alba)")
        self.key = name
        self.label, self.language = describe(name)
        self.model_name, self.voice_name = found["model"], found["voice"]
        self.sample_rate = 0
        self.model: PocketModel | None = None
        self._models = models
        self._state: Any = None

    def load(self) -> PocketVoice:
        """Load the model (shared) and the voice's state; :class:`VoiceLoadError` saying why not."""
        model = self._models.get(self.model_name)
        try:
            with model.lock:
                state = model.state_for(self.voice_name)
        except Exception as error:  # the hub's own error types: details to the log
            log.warning("Could not load the Pocket TTS voice %s: %s", self.key, error)
            raise VoiceLoadError(
                f"could not fetch the Pocket TTS voice {self.voice_name} ({error.__class__.__name__})"
            ) from error
        self._ready(model, state, f"{model.engine} {self.voice_name}")
        log.info("Voice %s loaded (%d Hz)", self.label, self.sample_rate)
        return self

    def cloned(self, key: str, label: str, state: Any) -> PocketVoice:
        """One user's own voice on this one's model, with the state their clip left it in (see
        :meth:`clone_state`); its speech is never kept for anyone."""
        assert self.model is not None
        voice = PocketVoice(self.key, self._models)
        voice.key, voice.label, voice.shared = key, label, False
        voice._ready(self.model, state, f"{self.model.engine} own voice")
        return voice

    def clone_state(self, samples: np.ndarray, while_listening: AbstractContextManager[int] | None = None) -> Any:
        """The model's state after hearing ``samples`` (float mono at ``sample_rate``), made once the
        model is free, on the threads ``while_listening`` gives (as :meth:`synthesize` takes them);
        :class:`VoiceLoadError` where this server cannot clone."""
        import torch

        assert self.model is not None
        if not self.model.cloning:
            raise VoiceLoadError(GATED)
        audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, :]
        with self._lock, while_listening or nullcontext(1) as threads:
            return self.model.state_for(audio, threads)

    def _ready(self, model: PocketModel, state: Any, engine: str) -> None:
        self.model, self._state, self.engine = model, state, engine
        self._lock = model.lock
        self.sample_rate = model.sample_rate
        if model.untrained and "untrained" not in self.label:
            self.label += " — untrained: noise, for measuring"

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        """The chunk's speech as Pocket TTS streams it; with ``lead``, in growing pieces as they come,
        the newest always kept for the return (the chunk's end fades out there). ``length_scale`` is
        unused: the model has no speaking rate."""
        import torch

        assert self.model is not None
        tts, lead_size = self.model.tts, int(LEAD_SECONDS * self.sample_rate)

        def speak() -> np.ndarray:
            torch.set_num_threads(threads)  # (Pocket TTS's own two threads, started now, take it)
            stop = threading.Event()  # its threads end with this call, whatever happens in it
            pending: list[np.ndarray] = []
            handed = 0
            try:
                for piece in tts.generate_audio_stream(
                    self._state, text, max_tokens=MAX_TOKENS, copy_state=True, stop=stop
                ):
                    ready = sum(part.size for part in pending)
                    if lead is not None and pending and ready >= max(lead_size, handed):
                        lead(np.concatenate(pending))
                        handed, pending = handed + ready, []
                    pending.append(piece.detach().cpu().numpy().astype(np.float32, copy=True))
            finally:
                stop.set()
            return np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)

        return in_passing_thread(speak, name="speakstream-speak")
