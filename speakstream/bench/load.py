"""Load: several users at once for a while, then many replies one after another, against `python app.py`.

Each simulated user is a client of its own (its own session, and its own address through the
X-Forwarded-For header the server trusts from a local proxy): it sends a prompt, waits for
the whole spoken reply, and sends the next. The rate limit is off (this measures load, not
limits). The concurrent phase runs twice, without and with the shared CPU budget
(``SPEAKSTREAM_SHARE_CORES``), in the same run; the sequential phase runs with today's defaults and
short replies (48 tokens) from 10 sessions in turn, since it looks for memory or threads that
grow with replies.
Prints replies completed, queue-full answers, errors, first audio and tokens/s per reply
(from its timing line), and the server's memory and threads at the start and the end.
Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speakstream.bench.replies import load_prompts
from speakstream.bench.report import median_p90, table
from speakstream.bench.speed import settings_env
from speakstream.local_app import free_port, start_app, stop_app
from speakstream.local_cluster import visitor_address

TIMING = re.compile(r"first audio (\d+) ms · ([\d.]+) tokens/s")


@dataclass
class Tally:
    """What the clients saw."""

    completed: int = 0
    queue_full: int = 0
    errors: list[str] = field(default_factory=list)
    first_audio: list[float] = field(default_factory=list)
    tokens_per_second: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ask(self, client, prompt: str, max_new_tokens: int) -> None:
        from gradio_client.utils import QueueError

        try:
            final = client.predict(
                prompt,
                system_prompt="",
                temperature=0.2,
                top_p=0.9,
                max_new_tokens=max_new_tokens,
                repetition_penalty=1.15,
                api_name="/chat",
            )
        except QueueError:
            with self.lock:
                self.queue_full += 1
            return
        except Exception as error:  # noqa: BLE001 - every other failure is counted and shown
            with self.lock:
                self.errors.append(f"{error.__class__.__name__}: {str(error)[:120]}")
            return
        timing = TIMING.search(final[4] or "")
        with self.lock:
            if timing is None or "Sorry, something went wrong" in str(final[1]):
                self.errors.append(f"no complete reply: {str(final[4])[:120]}")
                return
            self.completed += 1
            self.first_audio.append(float(timing.group(1)) / 1000)
            self.tokens_per_second.append(float(timing.group(2)))


class Visitors:
    """Clients of the page at ``url``: each a session and an address of its own."""

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, user: int) -> Any:
        from gradio_client import Client

        address = visitor_address(user)
        return Client(self.url, verbose=False, download_files=False, headers={"X-Forwarded-For": address})


class Server(Visitors):
    """`python app.py` with ``overrides``, and a look at its memory and threads."""

    def __init__(self, overrides: dict[str, object]) -> None:
        import psutil

        self.port = free_port()
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "speakstream-load-app.log"
        with log_path.open("w") as log:
            self.process = start_app(self.port, settings_env({"rate_limit": 0, **overrides}), log)
        super().__init__(f"http://127.0.0.1:{self.port}/")
        self.ps = psutil.Process(self.process.pid)

    def footprint(self) -> str:
        return f"{self.ps.memory_info().rss / 2**20:.0f} MB, {self.ps.num_threads()} threads"

    def stop(self) -> None:
        stop_app(self.process)


def concurrent_users(server: Visitors, prompts: list[str], users: int, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds

    def user(index: int) -> None:
        client = server.client(index)
        turn = index
        while time.monotonic() < deadline:
            tally.ask(client, prompts[turn % len(prompts)], 256)
            turn += 1

    threads = [threading.Thread(target=user, args=(index,)) for index in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


SEQUENTIAL_SESSIONS = 10


def one_after_another(server: Server, prompts: list[str], replies: int) -> Tally:
    """Short replies (48 tokens) in turn from the same few sessions: memory that grows here grows
    with replies, not with sessions (those are bounded by ``SPEAKSTREAM_MAX_SESSIONS``)."""
    tally = Tally()
    sessions = [server.client(1000 + index) for index in range(SEQUENTIAL_SESSIONS)]
    for index in range(replies):
        tally.ask(sessions[index % len(sessions)], prompts[index % len(prompts)], 48)
        if index % 50 == 49:
            print(f"  after {index + 1} replies: {server.footprint()}", flush=True)
    return tally


FIGURES = ["completed", "queue full", "errors", "first audio ms", "tokens/s"]


def figures(tally: Tally) -> list[str]:
    """What the clients saw, in :data:`FIGURES` order."""
    return [
        str(tally.completed),
        str(tally.queue_full),
        str(len(tally.errors)),
        median_p90(tally.first_audio, 1000),
        median_p90(tally.tokens_per_second, digits=1),
    ]


def row(name: str, tally: Tally, start: str, end: str) -> list[str]:
    return [name, *figures(tally), start, end]


def bench_load(prompts_file: Path, limit: int | None, users: int = 8, minutes: float = 2.0, replies: int = 300) -> None:
    prompts = load_prompts(prompts_file)[:limit]
    rows = []
    for name, overrides in (("no CPU budget", {"share_cores": False}), ("CPU budget", {})):
        server = Server(overrides)
        try:
            start = server.footprint()
            print(f"{users} users for {minutes:g} min, {name}: server at {start}", flush=True)
            tallies = [(f"{users} users, {name}", concurrent_users(server, prompts, users, minutes * 60), start)]
            rows.append(row(*tallies[-1], server.footprint()))
            if name == "CPU budget" and replies:
                start = server.footprint()
                print(f"{replies} replies one after another: server at {start}", flush=True)
                tallies.append((f"{replies} in a row, {name}", one_after_another(server, prompts, replies), start))
                rows.append(row(*tallies[-1], server.footprint()))
        finally:
            server.stop()
        for phase, tally, _ in tallies:
            for error in tally.errors[:5]:
                print(f"  {phase}: {error}")
    print(table(["phase", *FIGURES, "server at start", "server at end"], rows))
