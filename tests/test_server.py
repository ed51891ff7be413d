"""The app as users reach it: served by Gradio, driven through gradio_client, started by app.py."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from speakstream.text.conversation import content_text

from support import chat, chat_client, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What is the capital of France? One sentence, please."


def assistant_texts(outputs: list[tuple]) -> list[str]:
    """The last chat message's text at each streamed update."""
    return [content_text(out[1][-1]["content"]) for out in outputs if out[1]]


def test_chat_streams_a_growing_reply_through_gradio_client(app_url: str) -> None:
    # (not the page's example as it stands: an example asked before is given again at once, whole)
    job = chat(chat_client(app_url), QUESTION, voice="piper", text_only=True)
    outputs = list(job)
    texts = [t for t in assistant_texts(outputs) if t]
    assert len(set(texts)) >= 3, "the reply should arrive in several growing updates"
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    final = job.outputs()[-1][1]
    assert content_text(final[0]["content"]) == QUESTION
    assert "Paris" in content_text(final[-1]["content"])


def test_over_long_message_never_reaches_the_chat(app_url: str) -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
    ]
    job = chat(chat_client(app_url), "x" * 5000, history=history, voice="piper", text_only=True)
    final = job.result()
    assert len(final[1]) == 2  # nothing added: no reply was generated


def test_a_model_that_cannot_load_exits_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "app.py", "--llm", "./missing/model.gguf"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "No model at './missing/model.gguf'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_exits_with_a_message(bundled_gguf: Path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "app.py", "--llm", str(bundled_gguf), "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1
    assert f"Could not serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_without_a_chat_template_exits_with_a_message(model, settings, tmp_path: Path) -> None:
    converted = model.conversion_dir(model.source)
    plain = tmp_path / "no-template"
    shutil.copytree(converted, plain)
    (plain / "chat_template.jinja").unlink()
    result = subprocess.run(
        [sys.executable, "app.py", "--llm", str(plain), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "has no chat template; use an Instruct model" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_that_cannot_work_are_refused_at_start_one_line_each() -> None:
    result = subprocess.run(
        [sys.executable, "app.py", "--temperature", "7"],
        cwd=ROOT,
        env={**os.environ, "SPEAKSTREAM_CHUNK_MIN_CHARS": "500", "SPEAKSTREAM_RATE_WINDOW": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: --temperature must be between 0 and 2 (got 7)",
        "error: SPEAKSTREAM_RATE_WINDOW must be at least 0.001 (got 0)",
        "error: chunk sizes must satisfy SPEAKSTREAM_CHUNK_MIN_CHARS <= SPEAKSTREAM_FIRST_CHUNK_MAX_CHARS "
        "<= SPEAKSTREAM_CHUNK_MAX_CHARS (got 500, 24, 100)",
    ]
