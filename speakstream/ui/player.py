"""How a reply's audio reaches the listener: the page's Web Audio player, or Gradio's HLS stream.

Web Audio (the default): each update of the reply carries the reply's id and its newest
segments (16-bit PCM, base64, with the text each one speaks), keyed by their index in the
reply. Gradio sends only what changed (the new key), through its own queue and event stream,
and what the page and the server hold per update stays the same size however long the reply
(the whole reply so far made every update cost more than the one before). The page schedules
each segment with ``AudioBufferSourceNode.start(t)`` right after the one before, so there is
no gap while the server is ahead, remembers how many it scheduled (a repeated update never
plays a segment twice; updates merged on the way lose nothing while they are fewer than
``SEGMENTS_PER_UPDATE``), stops every scheduled segment at once on Stop, a new message, Clear
or Undo, and ignores whatever still arrives for a stopped reply.

HLS (``--player hls``): Gradio's own ``gr.Audio(streaming=True)``, which re-encodes every
segment to AAC with ffmpeg and plays an HLS playlist polled by hls.js; first sound comes
later and playback can stall (see the README's Benchmarks). Kept as the baseline that
``bench browser`` measures the player against.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from importlib import resources
from typing import Any

import gradio as gr
import numpy as np

from speakstream.audio.segments import silence, wav_bytes

SEGMENT_TAIL_SECONDS = 0.1
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


def player_component(player: str) -> gr.Component:
    """The page element the reply's audio is sent to."""
    if player == "hls":
        return gr.Audio(
            label="Spoken reply",
            streaming=True,
            autoplay=True,
            interactive=False,
            buttons=["download"],
            elem_id="reply-audio",
        )
    # The styles go in the page as they are (gr.HTML's css_template would scope them to the
    # player, and the spoken sentence's highlight is in the chat).
    return gr.HTML(
        value=None,
        html_template=f"<style>{front_end('player.css')}</style>{front_end('player.html')}",
        js_on_load=front_end("player.js"),
        elem_id="player",
        label="Spoken reply",
    )


def pcm_base64(samples: np.ndarray) -> str:
    """16-bit little-endian PCM, as the page's player reads it."""
    return base64.b64encode(np.asarray(samples, dtype="<i2").tobytes()).decode("ascii")


class WebAudioStream:
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

    def start(self) -> Any:
        return self.value()

    def segment(self, samples: np.ndarray, text: str) -> list[Any]:
        # "at": the server's clock when the segment was handed out (ms), for measuring the transport
        segment = {"pcm": pcm_base64(samples), "text": text, "at": round(time.time() * 1000)}
        self.newest.append((self.count, segment))
        self.count += 1
        return [self.value()]

    def text(self) -> Any:
        return self.shown  # unchanged: nothing is sent

    def end(self) -> Any:
        return self.value(done=True)


class HlsStream:
    """What one reply sends to Gradio's streaming ``gr.Audio``, in the order its HLS player handles best.

    Nothing (``gr.skip()``) until the first segment exists; after that, a one-sample "drain"
    WAV on every text-only update flushes ffmpeg's encoder; every segment ends with drain, a
    short silence, drain, so the playlist always ends on a short segment.
    """

    def __init__(self, rate: int) -> None:
        self.drain = wav_bytes(silence(1 / rate, rate), rate)
        self.tail = wav_bytes(silence(SEGMENT_TAIL_SECONDS, rate), rate)
        self.rate = rate
        self.spoken = False

    def start(self) -> Any:
        return gr.skip()

    def segment(self, samples: np.ndarray, text: str) -> list[Any]:
        self.spoken = True
        return [wav_bytes(samples, self.rate), self.drain, self.tail, self.drain]

    def text(self) -> Any:
        return self.drain if self.spoken else gr.skip()

    def end(self) -> Any:
        return self.text()


AudioStream = WebAudioStream | HlsStream


def audio_stream(player: str, reply: str, rate: int) -> AudioStream:
    """What reply ``reply`` sends to the page's ``player`` (the Web Audio player tells replies apart by it)."""
    return HlsStream(rate) if player == "hls" else WebAudioStream(reply, rate)
