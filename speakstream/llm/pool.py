"""Language models by name: loaded when picked, shared by every session, a bounded number at once.

Users pick a model per reply. However many ask for the same model at the same time, it is
loaded once (one load at a time, on one loader thread, so loads never compete for the
CPU and memory with each other, and never hold a reply's place in the queue). The start-up
model always stays loaded. A new model is loaded first and only then, once it works, the
least recently used idle other model is unloaded to keep the bound (for the length of a load
one model more is in memory); if every other loaded model is busy, the request is refused
with a message rather than going over the bound.

What users may load: the listed models, and (only with ``--allow-custom-models``) other hub
ids, never a path on this server; any model fetched from the hub for a user is checked
against ``SPEAKSTREAM_MAX_MODEL_SIZE_GB`` before it is downloaded. Every refusal and failure has a
message that is safe to show (no server paths); the details go to the log.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch

from speakstream.llm.model import ChatModel, LanguageModel
from speakstream.llm.sources import (
    HUB_PATTERNS,
    ModelLoadError,
    download_from_hub,
    model_label,
    resolve_model_source,
)
from speakstream.load_once import LoadOnce
from speakstream.settings import Settings

log = logging.getLogger(__name__)

# What a user may type as a custom model: "owner/name" on the hub (at most 96 characters, as
# the hub allows), never a path on the server.
HUB_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
GB = 1e9


class ModelBusy(ModelLoadError):
    """Every other loaded model is in use and there is no room for another one."""


@dataclass(frozen=True)
class HubFiles:
    """What a download of a hub model would fetch: its size, and the commit that size is of."""

    size: int
    revision: str | None


def hub_files(repo_id: str) -> HubFiles:
    """The bytes a download of ``repo_id`` fetches (every file it takes), from the hub's metadata alone."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, files_metadata=True, timeout=15)
    fetched = [
        sibling
        for sibling in info.siblings or []
        if any(fnmatch(sibling.rfilename, pattern) for pattern in HUB_PATTERNS)
    ]
    if not any(sibling.rfilename.endswith(".safetensors") for sibling in fetched):
        raise ModelLoadError(f"{repo_id} has no safetensors weights on the hub, so this server cannot load it.")
    return HubFiles(sum(sibling.size or 0 for sibling in fetched), info.sha)


@dataclass
class _Slot:
    model: ChatModel
    users: int = 0


class ModelPool:
    """The loaded language models, keyed by what the user chose (a hub id, or a server-side path)."""

    def __init__(
        self,
        settings: Settings,
        default: ChatModel,
        load: Callable[[str], ChatModel] | None = None,
        files: Callable[[str], HubFiles] = hub_files,
    ) -> None:
        self.settings = settings
        # The start-up model's name: the --llm id, or the model a --llm-endpoint server is asked for
        self.default_spec = (settings.llm_endpoint_model or settings.llm) if settings.llm_endpoint else settings.llm
        self._load_model = load or self._load_from_source
        self._hub_files = files
        self._slots: OrderedDict[str, _Slot] = OrderedDict({self.default_spec: _Slot(default)})
        self._lock = threading.Lock()
        self._loads = LoadOnce(
            "model",
            self._load,
            self._lock,
            too_many=lambda: ModelBusy("Other models are loading for other users right now; try again in a minute."),
            remember=lambda error: not isinstance(error, ModelBusy),  # no room passes once a model is free
        )

    @property
    def default(self) -> ChatModel:
        """The start-up model (always loaded)."""
        return self._slots[self.default_spec].model

    @property
    def choices(self) -> list[str]:
        """The models offered in the page: the start-up model first, then the listed ones (none other
        when a model server writes the replies)."""
        if self.settings.llm_endpoint:
            return [self.default_spec]
        return list(dict.fromkeys([self.default_spec, *self.settings.model_names]))

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
        shown = spec if len(spec) <= 100 else spec[:100] + "…"
        if not self.settings.allow_custom_models:
            raise ModelLoadError(f"This server only offers the listed models, not {shown!r}.")
        if not HUB_ID.match(spec):
            raise ModelLoadError(
                f"{shown!r} is not a Hugging Face model id (like HuggingFaceTB/SmolLM2-360M-Instruct)."
            )
        return spec

    def request(self, spec: str | None) -> Future[ChatModel]:
        """The model for ``spec``: a finished future when it is loaded, else its (single) load."""
        spec = self.check(spec)
        with self._lock:
            slot = self._slots.get(spec)
            if slot is not None:
                self._slots.move_to_end(spec)
                ready: Future[ChatModel] = Future()
                ready.set_result(slot.model)
                return ready
            if spec not in self._loads.loading:
                log.info("Loading model %s (requested by a user)", spec)
            return self._loads.request(spec)

    @contextmanager
    def lease(self, spec: str | None) -> Iterator[ChatModel]:
        """Use a loaded model for one reply; it is not unloaded while any reply uses it."""
        spec = self.check(spec)
        with self._lock:
            slot = self._slots.get(spec)
            if slot is None:
                raise ModelBusy(
                    f"{model_label(spec)} is not loaded (it was unloaded to make room). Please pick it again."
                )
            slot.users += 1
            self._slots.move_to_end(spec)
        try:
            yield slot.model
        finally:
            with self._lock:
                slot.users -= 1

    def _load(self, spec: str) -> ChatModel:
        with self._lock:
            self._evictable()  # refuse early when there is no room to be made
        model = self._load_model(spec)
        with self._lock:
            while len(self._slots) >= self.settings.max_loaded_models:
                unloaded = self._evictable()
                del self._slots[unloaded]
                log.info("Unloaded model %s to make room", unloaded)
            self._slots[spec] = _Slot(model)
        gc.collect()  # give unloaded weights back
        return model

    def _evictable(self) -> str | None:
        """The model to unload for one more (None: there is room); refuses when every candidate is busy.

        Call with the lock held. The start-up model is never unloaded.
        """
        if len(self._slots) < self.settings.max_loaded_models:
            return None
        idle = next((spec for spec, slot in self._slots.items() if slot.users == 0 and spec != self.default_spec), None)
        if idle is None and len(self._slots) == 1:
            raise ModelBusy("This server keeps only its own model loaded; please use that one.")
        if idle is None:
            raise ModelBusy(
                f"This server keeps {self.settings.max_loaded_models} models loaded and the others are answering "
                "users right now; pick a loaded model or try again in a moment."
            )
        return idle

    def _load_from_source(self, spec: str) -> LanguageModel:
        """Size-check (hub models), fetch and load ``spec``; failures say what happened without server paths."""
        custom = spec not in self.choices
        settings = dataclasses.replace(self.settings, llm=spec)
        source = resolve_model_source(spec, hub_only=custom, download=self._size_checked_download)
        try:
            return LanguageModel(settings).load(source)
        except Exception as error:  # a broken download, an unsupported architecture, no chat template
            log.exception("Could not load %s", spec)
            reason = "it has no chat template" if "chat template" in str(error) else error.__class__.__name__
            raise ModelLoadError(f"Could not load {model_label(spec)} ({reason}).") from error

    def _size_checked_download(self, repo_id: str, *, local_files_only: bool) -> str:
        if local_files_only:
            return download_from_hub(repo_id, local_files_only=True)
        files = self._hub_files(repo_id)
        if files.size > self.settings.max_model_size_gb * GB:
            raise ModelLoadError(
                f"{model_label(repo_id)} is {files.size / GB:.1f} GB, more than this server's limit of "
                f"{self.settings.max_model_size_gb:g} GB."
            )
        return download_from_hub(repo_id, local_files_only=False, revision=files.revision)
