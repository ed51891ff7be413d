"""Soak: a few hundred short spoken replies against `python app.py`; memory and threads must level off.

Bounded in count and time, and only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from speakstream.bench.browser import free_port, start_app, stop_app
from speakstream.bench.report import table

QUESTIONS = ["What is the capital of France?", "Hi! How are you today?", "Write a haiku about autumn."]


def bench_soak(replies: int = 300, every: int = 25, max_minutes: float = 30) -> None:
    import psutil
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "SPEAKSTREAM_MAX_NEW_TOKENS": "32", "SPEAKSTREAM_RATE_LIMIT": "0"}
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "speakstream-soak-app.log"
    with log_path.open("w") as log:
        process = start_app(port, env, log)
    server = psutil.Process(process.pid)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    started = time.monotonic()
    client = None
    try:
        for index in range(replies + 1):
            if index % every == 0:
                rows.append(
                    [
                        str(index),
                        f"{server.memory_info().rss / 2**20:.0f}",
                        str(server.num_threads()),
                        f"{time.monotonic() - started:.0f}",
                    ]
                )
                print(f"  after {index} replies: {rows[-1][1]} MB resident, {rows[-1][2]} threads", flush=True)
                client = Client(url, verbose=False, download_files=False)  # a new session every `every` replies
            if index == replies or time.monotonic() - started > max_minutes * 60:
                break
            client.predict(QUESTIONS[index % len(QUESTIONS)], [], "piper", 1.0, False, api_name="/chat")
    finally:
        stop_app(process)
    print(table(["replies", "RSS MB", "threads", "seconds"], rows))
