"""Small helpers shared by the tests."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from speakstream.local_app import free_port
from speakstream.ui.handlers import ChatApp, ChatView

__all__ = [
    "PIRATE_WORDS",
    "WAIT_SECONDS",
    "Driven",
    "chat",
    "chat_client",
    "free_port",
    "generation_threads",
    "player_segments",
    "serve",
    "wait_until",
    "words",
]

# How long a test waits for something that should happen before calling it a failure: long
# enough for the busiest machine, since a passing test never waits it out.
WAIT_SECONDS = 30.0


def wait_until(condition: Callable[[], object], timeout: float = WAIT_SECONDS, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


# Words that show a reply followed the system prompt "You are a pirate captain."
PIRATE_WORDS = {"pirate", "pirates", "ship", "sea", "captain", "arr", "arrr", "treasure", "sail", "sailing"}


def own_openmp_threads() -> int:
    """The calling thread's own OpenMP thread count, as OpenMP itself reports it."""
    import torch

    info = torch.__config__.parallel_info()
    return int(info.split("omp_get_max_threads() :")[1].split()[0])


def chat_client(url: str, address: str | None = None, download_files: bool = False) -> Any:
    """A gradio_client session on the app at ``url``; with ``address``, as seen from that address
    (the server trusts its local proxy's X-Forwarded-For)."""
    from gradio_client import Client

    headers = {"X-Forwarded-For": address} if address else None
    return Client(url, verbose=False, download_files=download_files, headers=headers)


def chat(client: Any, message: object, **parameters: object) -> Any:
    """Ask ``/chat`` with parameters by name, as an API caller does (those left out: the page's
    defaults); returns the job."""
    return client.submit(message, api_name="/chat", **parameters)


def player_segments(values: list[dict]) -> list[dict]:
    """The segments a client of the Web Audio player's updates ``values`` collects, in order,
    as the page does: each index once, failing when one was never carried."""
    collected: list[dict] = []
    for value in values:
        for index, segment in sorted((int(key), segment) for key, segment in value["segments"].items()):
            if index >= len(collected):
                assert index == len(collected), f"segment {len(collected)} was in no update"
                collected.append(segment)
    return collected


def words(text: str) -> set[str]:
    """The words of ``text``, lower-case (so "ship" is not found in "relationship")."""
    return set(re.findall(r"[a-z']+", text.lower()))


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("speakstream-")]


@contextmanager
def serve(app: ChatApp) -> Iterator[str]:
    """The page of ``app``, served in this process on its settings' port; yields its URL.

    Its reply audio files go to a folder of their own inside Gradio's cache.
    """
    from speakstream.audio.replay_files import ReplayFiles, default_folder
    from speakstream.server import start

    gradio_cache = default_folder().parent
    gradio_cache.mkdir(parents=True, exist_ok=True)
    replays = ReplayFiles(app.settings.audio_file_max_age, Path(tempfile.mkdtemp(dir=gradio_cache)))
    port = app.settings.port
    demo = start(dataclasses.replace(app, replays=replays), server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        replays.close()


class Driven:
    """A reply's outputs pulled on a thread of its own, as Gradio pulls them; each one is kept."""

    def __init__(self, outputs: Iterator[tuple]) -> None:
        self.outputs: list[tuple] = []
        self.thread = threading.Thread(target=lambda: self.outputs.extend(outputs), daemon=True)
        self.thread.start()

    def ended(self) -> bool:
        self.thread.join(WAIT_SECONDS)
        return not self.thread.is_alive()

    def completed(self) -> bool:
        """Whether it ran to its end (its last update carries the timing line)."""
        return any(ChatView.of(out).completed for out in self.outputs)
