"""How a reply's audio reaches the listener: the page's Web Audio player (``static/player.js``).

Each update of the reply carries the reply's id and its newest
segments (16-bit PCM, base64, with the text each one speaks), keyed by their index in the
reply. Gradio sends only what changed (the new key), through its own queue and event stream,
and what the page and the server hold per update stays the same size however long the reply
(the whole reply so far made every update cost more than the one before). The page schedules
each segment with ``AudioBufferSourceNode.start(t)`` right after the one before, so there is
no gap while the server is ahead, remembers how many it scheduled (a repeated update never
plays a segment twice; updates merged on the way lose nothing while they are fewer than
``SEGMENTS_PER_UPDATE``), stops every scheduled segment at once on Stop, a new message, Clear
or Undo, and ignores whatever still arrives for a stopped reply. (Gradio's own streaming
audio element, which re-encodes each segment with ffmpeg into an HLS playlist, started later
and stalled; its figures are in the README's Benchmarks.)
"""

from __future__ import annotations

import base64
import time
from collections import deque
from importlib import resources
from typing import Any

import gradio as gr
import numpy as np

# The newest segments each Web Audio update carries: a segment comes at most a few a second,
# so the page would have to miss this many updates in a row to lose one.
SEGMENTS_PER_UPDATE = 4


def front_end(name: str) -> str:
    """A file of the page's front end (``speakstream/ui/static``): JavaScript, CSS and HTML live there."""
    return resources.files("speakstream.ui").joinpath("static", name).read_text(encoding="utf-8")


# The events' JavaScript, run in the page before the handler: Stop and Clear silence the
# player; the page says when what the browser saved is back.
STOP_JS = front_end("stop.js")
CLEAR_JS = front_end("clear.js")
RESTORED_JS = front_end("restored.js")


def player_component() -> gr.Component:
    """The page element the reply's audio is sent to."""
    # The styles go in the page as they are (gr.HTML's css_template would scope them to the
    # player, and the spoken sentence's highlight is in the chat).
    return gr.HTML(
        value=None,
        html_template=f"<style>{front_end('player.css')}</style>{front_end('player.html')}",
        js_on_load=front_end("player.js"),
        elem_id="player",
        label="Spoken reply",
    )


def carries_audio(update: Any) -> bool:
    """Whether an update of the player (:meth:`AudioStream.value`) hands out segments to play."""
    return isinstance(update, dict) and bool(update.get("segments"))


def pcm_base64(samples: np.ndarray) -> str:
    """16-bit little-endian PCM, as the page's player reads it."""
    return base64.b64encode(np.asarray(samples, dtype="<i2").tobytes()).decode("ascii")


class AudioStream:
    """What one reply sends to the Web Audio player: its id, its sample rate, its newest segments by index."""

    def __init__(self, reply: str, rate: int) -> None:
        self.reply = reply
        self.rate = rate
        self.count = 0
        self.newest: deque[tuple[int, dict[str, str]]] = deque(maxlen=SEGMENTS_PER_UPDATE)
        self.shown: dict[str, Any] = {}

    def value(self, done: bool = False) -> dict[str, Any]:
        # A new dict each time: Gradio sends the difference from the value it sent before.
        segments = {str(index): segment for index, segment in self.newest}
        self.shown = {"reply": self.reply, "rate": self.rate, "segments": segments, "done": done}
        return self.shown

    def start(self) -> dict[str, Any]:
        return self.value()

    def segment(self, samples: np.ndarray, text: str) -> dict[str, Any]:
        # "at": the server's clock when the segment was handed out (ms), for measuring the transport
        segment = {"pcm": pcm_base64(samples), "text": text, "at": round(time.time() * 1000)}
        self.newest.append((self.count, segment))
        self.count += 1
        return self.value()

    def text(self) -> dict[str, Any]:
        return self.shown  # unchanged: nothing is sent

    def end(self) -> dict[str, Any]:
        return self.value(done=True)
