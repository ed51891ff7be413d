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
from typing import Any

import gradio as gr
import numpy as np

from speakstream.audio.segments import silence, wav_bytes

SEGMENT_TAIL_SECONDS = 0.1
# The newest segments each Web Audio update carries: a segment comes at most a few a second,
# so the page would have to miss this many updates in a row to lose one.
SEGMENTS_PER_UPDATE = 4

PLAYER_TEMPLATE = """
<div class="speakstream-player" data-state="idle">
  <span class="title">Spoken reply</span>
  <button type="button" class="state" aria-live="polite" title="What the voice is doing">Idle</button>
  <label class="volume">Volume <input type="range" min="0" max="1" step="0.05" value="1" aria-label="Volume"></label>
</div>
"""

PLAYER_CSS = """
.speakstream-player { display: flex; align-items: center; gap: 1em; flex-wrap: wrap; }
.speakstream-player .state { border: 1px solid var(--border-color-primary); border-radius: 999px;
  padding: 0.2em 0.9em; background: var(--background-fill-secondary); color: var(--body-text-color); }
.speakstream-player .state::before { content: "●"; margin-right: 0.4em; color: var(--body-text-color-subdued); }
.speakstream-player[data-state="speaking"] .state::before { color: #22c55e; }
.speakstream-player[data-state="stopped"] .state::before { color: #ef4444; }
.speakstream-player[data-state="blocked"] .state { cursor: pointer; border-color: #f59e0b; }
.speakstream-player .title { font-weight: 600; }
.speakstream-player .volume { display: flex; align-items: center; gap: 0.5em; }
"""

# Runs once when the page mounts the player; `element`, `props` and `watch` come from gr.HTML.
PLAYER_JS = r"""
const root = element.querySelector('.speakstream-player');
const label = root.querySelector('.state');
const volume = root.querySelector('input[type=range]');
const LEAD = 0.005;  // seconds from scheduling to playing a segment when nothing is playing
const LABELS = {idle: 'Idle', speaking: 'Speaking', stopped: 'Stopped',
                blocked: 'Sound is blocked by the browser: click here to hear the reply'};
const player = window.speakstreamPlayer = {
  ctx: null, gain: null, analyser: null, reply: null, scheduled: 0, next: 0, done: false,
  sources: [], stopped: new Set(), state: 'idle', log: [], lastMatch: 0, played: 0, underruns: 0, lost: 0,
};
const LOG_LENGTH = 1000;  // the newest scheduled segments kept in player.log
// For the console and scripts: what the player is doing and how far ahead of the speaker it is.
player.getState = () => ({
  state: player.state, reply: player.reply, queued: player.ctx ? Math.max(0, player.next - player.ctx.currentTime) : 0,
  played: player.played, underruns: player.underruns, lost: player.lost,
});
player.getQueueLength = () => player.sources.length;
const saved = Number(localStorage.getItem('speakstream-volume'));
if (localStorage.getItem('speakstream-volume') !== null && saved >= 0 && saved <= 1) volume.value = String(saved);
const style = document.createElement('style');
style.textContent = '::highlight(speakstream-spoken) { background-color: rgba(250, 204, 21, 0.45); }';
document.head.appendChild(style);

function context() {
  if (!player.ctx) {
    const ctx = new (window.AudioContext || window.webkitAudioContext)({latencyHint: 'interactive'});
    const gain = ctx.createGain();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    gain.gain.value = Number(volume.value);
    gain.connect(ctx.destination);
    gain.connect(analyser);
    Object.assign(player, {ctx, gain, analyser});
  }
  return player.ctx;
}
// Browsers let a page play sound after the user's own gesture: Enter, Send or an example click is one.
function unlock() {
  const ctx = context();
  if (ctx.state !== 'running') ctx.resume().then(show, show);
}
document.addEventListener('keydown', unlock, true);
document.addEventListener('pointerdown', unlock, true);
label.addEventListener('click', unlock);
volume.addEventListener('input', () => {
  if (player.gain) player.gain.gain.value = Number(volume.value);
  localStorage.setItem('speakstream-volume', volume.value);
});

function samples(base64) {
  const bytes = atob(base64);
  const floats = new Float32Array(bytes.length >> 1);
  for (let i = 0; i < floats.length; i++) {
    const value = bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8);  // 16-bit little-endian
    floats[i] = (value >= 32768 ? value - 65536 : value) / 32768;
  }
  return floats;
}
function schedule(segment, index, rate) {
  const ctx = context();
  const data = samples(segment.pcm);
  if (!data.length) return;
  const buffer = ctx.createBuffer(1, data.length, rate);
  buffer.copyToChannel(data, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(player.gain);
  // Right after the segment before when that one is still playing (no gap), else as soon as possible.
  const ahead = player.next > ctx.currentTime;
  if (!ahead && index > 0) player.underruns += 1;  // the reply's sound ran out before this segment came
  const start = ahead ? player.next : ctx.currentTime + LEAD;
  source.start(start);
  const item = {source, start, end: start + buffer.duration, text: segment.text || '', index, reply: player.reply};
  player.next = item.end;
  player.sources.push(item);
  player.log.push({reply: player.reply, index, start, end: item.end, arrived: ctx.currentTime, sent: segment.at});
  if (player.log.length > LOG_LENGTH) player.log.splice(0, player.log.length - LOG_LENGTH);
  // Once played, nothing refers to the segment's buffer any more: memory stays flat over a long chat.
  source.onended = () => { player.played += 1; player.sources = player.sources.filter((s) => s !== item); show(); };
}
function silence() {
  for (const item of player.sources) {
    item.source.onended = null;
    try { item.source.stop(); } catch (error) { /* not started yet */ }
  }
  player.sources = [];
  player.next = 0;
}
// Stop: this reply is silent within one audio block, and nothing it still sends is played.
player.stop = () => {
  if (player.reply) player.stopped.add(player.reply);
  silence();
  player.state = 'stopped';
  show();
};
player.clear = () => { player.stop(); player.state = 'idle'; show(); };
player.level = () => {
  if (!player.analyser) return 0;
  const buffer = new Float32Array(player.analyser.fftSize);
  player.analyser.getFloatTimeDomainData(buffer);
  return buffer.reduce((peak, v) => Math.max(peak, Math.abs(v)), 0);
};

function normalized(text) { return text.replace(/[*_`#>]/g, '').replace(/\s+/g, ' ').trim(); }
// The range of `text` in the reply's bubble, found in the rendered text (markdown marks and
// spacing aside), searching on from where the previous sentence was found.
function find(bubble, text) {
  const needle = normalized(text);
  if (!needle) return null;
  const walker = document.createTreeWalker(bubble, NodeFilter.SHOW_TEXT);
  let flat = '';
  const where = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const value = node.nodeValue;
    for (let i = 0; i < value.length; i++) {
      const c = value[i];
      if (/\s/.test(c)) {
        if (flat && !flat.endsWith(' ')) { flat += ' '; where.push([node, i]); }
      } else if (!/[*_`#>]/.test(c)) { flat += c; where.push([node, i]); }
    }
  }
  let at = flat.indexOf(needle, player.lastMatch);
  if (at < 0) at = flat.indexOf(needle);
  if (at < 0) return null;
  player.lastMatch = at;
  const range = document.createRange();
  range.setStart(where[at][0], where[at][1]);
  const [endNode, endOffset] = where[at + needle.length - 1];
  range.setEnd(endNode, endOffset + 1);
  return range;
}
function highlight() {
  if (!(window.CSS && CSS.highlights && window.Highlight)) return;
  const now = player.ctx ? player.ctx.currentTime : 0;
  const playing = player.state === 'speaking' && player.sources.find((s) => s.start <= now && now < s.end);
  const bubbles = document.querySelectorAll('#chat .bot');
  const range = playing && bubbles.length ? find(bubbles[bubbles.length - 1], playing.text) : null;
  if (range) CSS.highlights.set('speakstream-spoken', new Highlight(range));
  else CSS.highlights.delete('speakstream-spoken');
  root.dataset.spoken = playing ? String(playing.index) : '';
}
function show() {
  const running = player.ctx && player.ctx.state === 'running';
  if (player.sources.length) player.state = running ? 'speaking' : 'blocked';
  else if (player.state !== 'stopped') player.state = 'idle';
  root.dataset.state = player.state;
  label.textContent = LABELS[player.state];
  highlight();
}
setInterval(show, 100);
const chat = document.querySelector('#chat');
if (chat) new MutationObserver(() => requestAnimationFrame(highlight)).observe(chat, {childList: true, subtree: true});

watch('value', () => {
  const value = props.value;
  if (!value || !value.reply || player.stopped.has(value.reply)) return;
  if (value.reply !== player.reply) {
    silence();
    Object.assign(player, {reply: value.reply, scheduled: 0, done: false, lastMatch: 0});
    player.state = 'idle';
  }
  const segments = value.segments || {};
  const indices = Object.keys(segments).map(Number).sort((a, b) => a - b);
  for (const index of indices) {
    if (index < player.scheduled) continue;  // already scheduled
    player.lost += index - player.scheduled;  // more updates merged than one carries
    schedule(segments[index], index, value.rate);
    player.scheduled = index + 1;
  }
  player.done = Boolean(value.done);
  show();
});
"""

# Silences the reply that is playing, in either player (and the replay); passes a handler's inputs on unchanged.
STOP_JS = (
    "(...args) => { window.speakstreamPlayer?.stop(); "
    "document.querySelectorAll('audio').forEach((a) => a.pause()); return args; }"
)
CLEAR_JS = (
    "(...args) => { window.speakstreamPlayer?.clear(); "
    "document.querySelectorAll('audio').forEach((a) => a.pause()); return args; }"
)


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
    return gr.HTML(
        value=None,
        html_template=PLAYER_TEMPLATE,
        css_template=PLAYER_CSS,
        js_on_load=PLAYER_JS,
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
