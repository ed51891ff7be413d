"""Where torch does its CPU work: only on threads that end, never on one that lives on.

torch's CPU kernels run on OpenMP (GNU libgomp). Every thread that runs a parallel kernel
keeps a team of worker threads for as long as it lives. Once the process holds more of
those workers than the machine has cores, libgomp stops letting idle workers spin and puts
them to sleep, and waking them costs more than the small matrix products of token-by-token
decoding take: measured here, a 1536x576 float32 product took 138 us on a fresh thread and
230 us on a thread started after the main thread had run a model load (SmolLM2 decoding:
26 -> 16 tokens/s; with 4-bit weights 47 -> 21). Replies already generate on threads of
their own; every other entry point that runs torch (loading a model, scoring text, Coqui
synthesis) hands its work to a thread that then ends, so the main thread and the
long-lived server threads never hold a team (tests/test_torch_threads.py checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_passing_thread(work: Callable[[], T], name: str = "speakstream-load") -> T:
    """Run ``work`` on a new thread, wait for it, and return its result (or raise its error)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
