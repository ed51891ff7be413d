"""Running anywhere: the README as a Space card, host/port/share from the environment, what a Space installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import gradio
import httpx
import pytest
import yaml

from speakstream.local_app import start_app, stop_app

from support import free_port

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with a Space card's front matter"
    return yaml.safe_load(match.group(1))


def test_readme_is_a_valid_space_card() -> None:
    card = front_matter()
    assert card["sdk"] == "gradio"
    assert card["sdk_version"] == gradio.__version__, "the Space must run the Gradio the tests ran with"
    assert (ROOT / card["app_file"]).is_file()
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert str(card["python_version"]) == tested, "the Space must run the Python the tests ran with"
    assert f"Python {tested}" in (ROOT / "README.md").read_text(encoding="utf-8"), "the README names it too"
    assert card["title"] and 0 < len(card["short_description"]) <= 60


def test_space_packages_list_what_the_app_needs() -> None:
    packages = (ROOT / "packages.txt").read_text().split()
    assert set(packages) == {"espeak-ng"}, "glow-tts's phonemes; nothing else is needed from apt to run"


def test_requirements_pin_the_versions_the_tests_ran_with() -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    assert f"gradio=={gradio.__version__}" in requirements


@pytest.mark.slow
def test_host_and_port_from_the_environment_and_a_failed_share_keeps_serving(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_SHARE": "1"}
    log_path = tmp_path / "app.log"
    with log_path.open("w") as log:
        process = start_app(port, env, log, args=[])
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log_text = log_path.read_text()
            if "Running on public URL" in log_text or "No public link could be created" in log_text:
                break
            time.sleep(0.5)
        assert "Running on public URL" in log_text or f"still serving on http://127.0.0.1:{port}" in log_text
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        stop_app(process)


@pytest.mark.slow
def test_download_models_reports_what_it_could_not_fetch(tmp_path: Path) -> None:
    """Offline (forced here), --download-models says which model failed and exits non-zero."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TTS_HOME": str(tmp_path / "tts")}
    result = subprocess.run(
        [sys.executable, "app.py", "--download-models"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "Could not get 'HuggingFaceTB/SmolLM2-135M-Instruct' from the Hugging Face hub" in result.stderr
    assert "Could not get 'HuggingFaceTB/SmolLM2-360M-Instruct' from the Hugging Face hub" in result.stderr, "listed"
    assert "glow-tts (Coqui TTS) is unavailable" in result.stderr
    assert "could not fetch the Piper voice de_DE-thorsten-medium from the Hugging Face hub" in result.stderr
    assert "could not fetch Pocket TTS's french model from the Hugging Face hub" in result.stderr
    assert "Voices ready: Joe (Piper, offline)" in result.stderr
