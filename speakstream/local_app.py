"""`python app.py` run on this machine, for the benchmarks and the tests: a free port, starting
the app and waiting until its page is served, stopping it; and Debian's Chromium to look at it.

Only ever listens on and talks to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]  # the repository, where app.py is


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    """Debian's Chromium, or the browser named by SPEAKSTREAM_CHROMIUM."""
    return os.environ.get("SPEAKSTREAM_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_app(
    port: int, env: dict[str, str], log: IO[str] | int, args: Sequence[str] | None = None, timeout: float = 240
) -> subprocess.Popen[bytes]:
    """Start `python app.py` (by default with ``--port port``) and return once ``port`` serves its page."""
    args = ["--port", str(port)] if args is None else list(args)
    process = subprocess.Popen(
        [sys.executable, "app.py", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    if serves(f"http://127.0.0.1:{port}/", process, timeout):
        return process
    if process.poll() is not None:
        raise RuntimeError(f"app.py exited with {process.returncode}")
    process.kill()
    raise RuntimeError(f"app.py did not serve within {timeout:.0f} s")


def serves(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``url`` answers 200 within ``timeout`` seconds, while ``process`` (its server) runs."""
    import httpx

    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def stop_app(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started here: asked first, killed if it does not stop."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
