"""Language models by name: loaded on first use, shared by every session, a bounded number at once.

Users pick a model per reply. However many ask for the same model at the same time, it is
loaded once (one load at a time, on one loader thread, so loads never compete for the
CPU and memory with each other). When a new model needs room, the least recently used
model that no reply is using is unloaded; if every loaded model is busy, the request is
refused with a message rather than going over the bound.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from speakstream.model import LanguageModel, ModelLoadError, model_label, resolve_model_source
from speakstream.settings import Settings

log = logging.getLogger(__name__)

# What a user may type as a custom model: "owner/name" on the hub, never a path on the server.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelBusy(ModelLoadError):
    """Every loaded model is in use and there is no room for another one."""


@dataclass
class _Slot:
    model: LanguageModel
    users: int = 0


class ModelPool:
    """The loaded language models, keyed by what the user chose (a hub id, or a server-side path)."""

    def __init__(
        self, settings: Settings, default: LanguageModel, load: Callable[[str], LanguageModel] | None = None
    ) -> None:
        self.settings = settings
        self._load_model = load or self._load_from_source
        self.default_spec = settings.llm
        self.loads = 0  # models loaded after start-up, for the logs and tests
        self._slots: OrderedDict[str, _Slot] = OrderedDict({settings.llm: _Slot(default)})
        self._loading: dict[str, Future[LanguageModel]] = {}
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")

    @property
    def choices(self) -> list[str]:
        """The models offered in the page: the start-up model first, then the listed ones."""
        listed = [spec.strip() for spec in self.settings.model_choices.split(",") if spec.strip()]
        return list(dict.fromkeys([self.default_spec, *listed]))

    @property
    def loaded(self) -> list[str]:
        """Loaded models, least recently used first."""
        with self._lock:
            return list(self._slots)

    def check(self, spec: str | None) -> str:
        """The model to use for ``spec`` (empty: the default); refuses what users may not load."""
        spec = (spec or "").strip() or self.default_spec
        if spec in self.choices:
            return spec
        if not self.settings.allow_custom_models:
            raise ModelLoadError(f"This server only offers the listed models, not {spec!r}.")
        if not HUB_ID.match(spec):
            raise ModelLoadError(f"{spec!r} is not a Hugging Face model id (like HuggingFaceTB/SmolLM2-360M-Instruct).")
        return spec

    def request(self, spec: str | None) -> Future[LanguageModel]:
        """The model for ``spec``: a finished future when it is loaded, else its (single) load."""
        spec = self.check(spec)
        with self._lock:
            slot = self._slots.get(spec)
            if slot is not None:
                self._slots.move_to_end(spec)
                ready: Future[LanguageModel] = Future()
                ready.set_result(slot.model)
                return ready
            if spec not in self._loading:
                log.info("Loading model %s (requested by a user)", spec)
                self._loading[spec] = self._loader.submit(self._load, spec)
            return self._loading[spec]

    @contextmanager
    def lease(self, spec: str | None) -> Iterator[LanguageModel]:
        """Use a loaded model for one reply; it is not unloaded while any reply uses it."""
        spec = self.check(spec)
        with self._lock:
            slot = self._slots.get(spec)
            if slot is None:
                raise ModelBusy(f"{model_label(spec)} was unloaded to make room for another model. Please try again.")
            slot.users += 1
            self._slots.move_to_end(spec)
        try:
            yield slot.model
        finally:
            with self._lock:
                slot.users -= 1

    def _load(self, spec: str) -> LanguageModel:
        try:
            with self._lock:
                self._make_room()
            model = self._load_model(spec)
            with self._lock:
                self._slots[spec] = _Slot(model)
                self.loads += 1
            return model
        except ModelLoadError:
            raise
        except Exception as error:  # a broken download or an unsupported architecture
            raise ModelLoadError(f"Could not load {spec!r}: {error.__class__.__name__}: {error}") from error
        finally:
            with self._lock:
                self._loading.pop(spec, None)

    def _load_from_source(self, spec: str) -> LanguageModel:
        # No silent fallback to the bundled 135M model: the user asked for this one.
        settings = dataclasses.replace(self.settings, llm=spec)
        return LanguageModel(settings).load(resolve_model_source(spec, bundled=lambda: None))

    def _make_room(self) -> None:
        """Unload idle models, least recently used first, until one more fits (call with the lock)."""
        unloaded = False
        while len(self._slots) >= max(1, self.settings.max_loaded_models):
            idle = next((spec for spec, slot in self._slots.items() if slot.users == 0), None)
            if idle is None:
                raise ModelBusy(
                    f"All {len(self._slots)} loaded models are answering other users; "
                    "pick one of them or try again in a moment."
                )
            del self._slots[idle]
            unloaded = True
            log.info("Unloaded model %s to make room", idle)
        if unloaded:
            gc.collect()  # give the unloaded weights back before the next model is read
