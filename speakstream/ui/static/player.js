// The page's Web Audio player: each segment of a reply scheduled right after the one before.
//
// In the page this file runs as gr.HTML's js_on_load, which gives it `element`, `props` and
// `watch`; `node --test` loads it as a module for createPlayer, the scheduling core
// (tests/js/player.test.js), with a fake audio context.

const LEAD = 0.005;  // seconds from scheduling to playing a segment when nothing is playing
const LOG_LENGTH = 1000;  // the newest scheduled segments kept in player.log

// 16-bit little-endian PCM in base64, as the server sends it, to samples in [-1, 1).
function pcmSamples(base64) {
  const bytes = atob(base64);
  const floats = new Float32Array(bytes.length >> 1);
  for (let i = 0; i < floats.length; i++) {
    const value = bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8);
    floats[i] = (value >= 32768 ? value - 65536 : value) / 32768;
  }
  return floats;
}

// The player's state and scheduling. `newContext()` makes the AudioContext (on first use: a
// browser lets a page play sound only after a gesture), `volume()` the gain to start with,
// and `changed()` is called whenever what is playing changes.
function createPlayer({newContext, volume = () => 1, changed = () => {}}) {
  const player = {
    ctx: null, gain: null, analyser: null, reply: null, scheduled: 0, next: 0, done: false,
    sources: [], stopped: new Set(), state: 'idle', log: [], lastMatch: 0, played: 0, underruns: 0, lost: 0,
  };
  player.context = () => {
    if (!player.ctx) {
      const ctx = newContext();
      const gain = ctx.createGain();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 1024;
      gain.gain.value = volume();
      gain.connect(ctx.destination);
      gain.connect(analyser);
      Object.assign(player, {ctx, gain, analyser});
    }
    return player.ctx;
  };
  // For the console and scripts: what the player is doing and how far ahead of the speaker it is.
  player.getState = () => ({
    state: player.state, reply: player.reply,
    queued: player.ctx ? Math.max(0, player.next - player.ctx.currentTime) : 0,
    played: player.played, underruns: player.underruns, lost: player.lost,
  });
  player.getQueueLength = () => player.sources.length;

  function schedule(segment, index, rate) {
    const ctx = player.context();
    const data = pcmSamples(segment.pcm);
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
    source.onended = () => {
      player.played += 1;
      player.sources = player.sources.filter((s) => s !== item);
      player.refresh();
      changed();
    };
  }
  function silence() {
    for (const item of player.sources) {
      item.source.onended = null;
      try { item.source.stop(); } catch (error) { /* not started yet */ }
    }
    player.sources = [];
    player.next = 0;
  }
  // An update of the reply's audio: its id, rate, newest segments by index, and whether it is done.
  player.receive = (value) => {
    if (!value || !value.reply || player.stopped.has(value.reply)) return;  // a stopped reply stays silent
    if (value.reply !== player.reply) {
      silence();
      Object.assign(player, {reply: value.reply, scheduled: 0, done: false, lastMatch: 0, state: 'idle'});
    }
    const segments = value.segments || {};
    const indices = Object.keys(segments).map(Number).sort((a, b) => a - b);
    for (const index of indices) {
      if (index < player.scheduled) continue;  // already scheduled: a repeat plays nothing twice
      player.lost += index - player.scheduled;  // more updates merged than one carries
      schedule(segments[index], index, value.rate);
      player.scheduled = index + 1;
    }
    player.done = Boolean(value.done);
    player.refresh();
  };
  // Stop: this reply is silent within one audio block, and nothing it still sends is played.
  player.stop = () => {
    if (player.reply) player.stopped.add(player.reply);
    silence();
    player.state = 'stopped';
    player.refresh();
  };
  player.clear = () => { player.stop(); player.state = 'idle'; };
  player.refresh = () => {
    const running = player.ctx && player.ctx.state === 'running';
    if (player.sources.length) player.state = running ? 'speaking' : 'blocked';
    else if (player.state !== 'stopped') player.state = 'idle';
  };
  player.level = () => {
    if (!player.analyser) return 0;
    const buffer = new Float32Array(player.analyser.fftSize);
    player.analyser.getFloatTimeDomainData(buffer);
    return buffer.reduce((peak, v) => Math.max(peak, Math.abs(v)), 0);
  };
  return player;
}

const MARKS = /[*_`#>]/;
function normalized(text) { return text.replace(/[*_`#>]/g, '').replace(/\s+/g, ' ').trim(); }

// The range of `text` in the reply's bubble, found in the rendered text (markdown marks and
// spacing aside), searching on from where the previous sentence was found.
function find(player, bubble, text) {
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
      } else if (!MARKS.test(c)) { flat += c; where.push([node, i]); }
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

// In the page: the player's controls, the sentence being spoken highlighted in the chat.
function mount(element, props, watch) {
  const root = element.querySelector('.speakstream-player');
  const label = root.querySelector('.state');
  const volume = root.querySelector('input[type=range]');
  const LABELS = {idle: 'Idle', speaking: 'Speaking', stopped: 'Stopped',
                  blocked: 'Sound is blocked by the browser: click here to hear the reply'};
  const saved = localStorage.getItem('speakstream-volume');
  if (saved !== null && Number(saved) >= 0 && Number(saved) <= 1) volume.value = saved;
  const player = window.speakstreamPlayer = createPlayer({
    newContext: () => new (window.AudioContext || window.webkitAudioContext)({latencyHint: 'interactive'}),
    volume: () => Number(volume.value),
    changed: () => show(),
  });
  for (const name of ['receive', 'stop', 'clear']) {
    const act = player[name];
    player[name] = (...args) => { act(...args); show(); };
  }

  function highlight() {
    if (!(window.CSS && CSS.highlights && window.Highlight)) return;
    const now = player.ctx ? player.ctx.currentTime : 0;
    const playing = player.state === 'speaking' && player.sources.find((s) => s.start <= now && now < s.end);
    const bubbles = document.querySelectorAll('#chat .bot');
    const range = playing && bubbles.length ? find(player, bubbles[bubbles.length - 1], playing.text) : null;
    if (range) CSS.highlights.set('speakstream-spoken', new Highlight(range));
    else CSS.highlights.delete('speakstream-spoken');
    root.dataset.spoken = playing ? String(playing.index) : '';
  }
  function show() {
    player.refresh();
    root.dataset.state = player.state;
    label.textContent = LABELS[player.state];
    highlight();
  }
  // Browsers let a page play sound after the user's own gesture: Enter, Send or an example click is one.
  function unlock() {
    const ctx = player.context();
    if (ctx.state !== 'running') ctx.resume().then(show, show);
  }
  document.addEventListener('keydown', unlock, true);
  document.addEventListener('pointerdown', unlock, true);
  label.addEventListener('click', unlock);
  volume.addEventListener('input', () => {
    if (player.gain) player.gain.gain.value = Number(volume.value);
    localStorage.setItem('speakstream-volume', volume.value);
  });
  setInterval(show, 100);
  const chat = document.querySelector('#chat');
  if (chat) new MutationObserver(() => requestAnimationFrame(highlight)).observe(chat, {childList: true, subtree: true});
  watch('value', () => player.receive(props.value));
}

if (typeof module !== 'undefined') module.exports = {createPlayer, pcmSamples};
else mount(element, props, watch);
