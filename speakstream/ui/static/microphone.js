// The page's microphone: push-to-talk (click, speak, click again or stop speaking) and a
// hands-free conversation mode; speaking while a reply plays interrupts it.
//
// The page sends audio to the server only while the microphone hears more than its own
// background noise (an energy gate), so a listening page costs the server nothing while nobody
// speaks; the server's voice-activity model decides whether it is speech and when the turn ends,
// and answers each piece with the turn's state. In the page this file runs as gr.HTML's
// js_on_load (`element`, `trigger`, `server`); `node --test` loads it as a module for
// createGate and createSender (tests/js/microphone.test.js).

const RATE = 16000;  // what the server hears: 16 kHz, 16-bit PCM
const FRAME = 512;  // samples per analysis frame (32 ms)
const BEFORE_FRAMES = 10;  // frames kept from before the gate opens (0.32 s): the first syllable
const GATE_RATIO = 3;  // a frame this many times louder than the noise floor opens the gate
const GATE_MINIMUM = 0.002;  // and never below this level (RMS, full scale 1)

// The energy gate: the noise floor follows quiet frames quickly and loud ones slowly.
function createGate({ratio = GATE_RATIO, minimum = GATE_MINIMUM} = {}) {
  const gate = {floor: minimum / ratio, open: false};
  gate.feed = (level) => {
    const threshold = Math.max(minimum, gate.floor * ratio);
    gate.open = level >= threshold;
    const weight = level < gate.floor ? 0.2 : 0.05;
    gate.floor = Math.max(1e-5, gate.floor + weight * (level - gate.floor));
    return gate.open;
  };
  return gate;
}

// Sends pieces in order, one request at a time: what arrives while one is on its way goes with
// the next. `hear(piece)` is the server's function; `heard(answer)` gets each answer.
function createSender({id, hear, heard}) {
  const sender = {pending: [], busy: false, first: true, last: false};
  function join(chunks) {
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const all = new Int16Array(total);
    let at = 0;
    for (const c of chunks) { all.set(c, at); at += c.length; }
    return all;
  }
  async function flush() {
    if (sender.busy || (!sender.pending.length && !sender.last)) return;
    sender.busy = true;
    const samples = join(sender.pending.splice(0));
    const piece = {id, pcm: base64(samples), first: sender.first, last: sender.last};
    sender.first = false;
    sender.last = false;
    let answer;
    try { answer = await hear(piece); } catch (error) { answer = {state: 'error', message: 'The server did not answer: try again.'}; }
    sender.busy = false;
    heard(answer || {state: 'error', message: ''});
    flush();
  }
  sender.push = (samples) => { sender.pending.push(samples); flush(); };
  sender.finish = () => { sender.last = true; flush(); };
  sender.restart = () => { sender.pending = []; sender.first = true; sender.last = false; };
  return sender;
}

// The audio thread's part: hands the page each FRAME of the microphone's samples (an
// AudioWorklet, off the page's main thread; loaded from this function's source).
function tapProcessor() {
  class Tap extends AudioWorkletProcessor {
    constructor() { super(); this.frame = new Float32Array(512); this.filled = 0; }
    process(inputs) {
      const channel = inputs[0] && inputs[0][0];
      if (!channel) return true;
      for (let i = 0; i < channel.length; i++) {
        this.frame[this.filled++] = channel[i];
        if (this.filled === this.frame.length) { this.port.postMessage(this.frame); this.frame = new Float32Array(512); this.filled = 0; }
      }
      return true;
    }
  }
  registerProcessor('speakstream-tap', Tap);
}

function base64(int16) {
  const bytes = new Uint8Array(int16.buffer, int16.byteOffset, int16.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function toInt16(floats) {
  const out = new Int16Array(floats.length);
  for (let i = 0; i < floats.length; i++) out[i] = Math.max(-32768, Math.min(32767, Math.round(floats[i] * 32768)));
  return out;
}

function rms(floats) {
  let sum = 0;
  for (let i = 0; i < floats.length; i++) sum += floats[i] * floats[i];
  return Math.sqrt(sum / floats.length);
}

// Why the microphone cannot be used, in one line the user can act on.
function problemText(error) {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return 'The browser allows the microphone only on https or on this machine: open the page with an https link ' +
      '(a share link or a Space) or at http://127.0.0.1.';
  }
  if (error && (error.name === 'NotAllowedError' || error.name === 'SecurityError')) {
    return 'The microphone is blocked: allow it for this page in the browser\'s site settings, then click Talk again.';
  }
  if (error && (error.name === 'NotFoundError' || error.name === 'OverconstrainedError')) {
    return 'No microphone was found: connect one, or type your message.';
  }
  return 'The microphone could not be started' + (error && error.message ? ` (${error.message})` : '') + '.';
}

function mount(element, trigger, server) {
  const root = element.querySelector('.speakstream-mic');
  const button = root.querySelector('.talk');
  const handsFree = root.querySelector('.hands-free input');
  const meter = root.querySelector('.level');
  const status = root.querySelector('.status');
  const id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Math.random()).slice(2);
  const mic = window.speakstreamMicrophone = {
    id, state: 'off', log: [], stream: null, ctx: null, sending: false, before: [], gate: createGate(),
  };
  const sender = createSender({id, hear: (piece) => server.hear(piece), heard});

  function show(state, text) {
    if (state) mic.state = root.dataset.state = state;
    if (text !== undefined) status.textContent = text;
    button.setAttribute('aria-pressed', String(mic.state !== 'off'));
    button.textContent = mic.state === 'off' ? '🎤 Talk' : (handsFree.checked ? '■ Stop listening' : '■ Send');
  }
  function note(event, extra) {
    mic.log.push({event, at: performance.now(), ...extra});
    if (mic.log.length > 500) mic.log.splice(0, 100);
  }

  async function start() {
    if (!window.isSecureContext || !navigator.mediaDevices) { show('off', problemText(null)); return false; }
    try {
      mic.stream = await navigator.mediaDevices.getUserMedia({
        audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1},
      });
    } catch (error) {
      show('off', problemText(error));
      return false;
    }
    note('capture');
    mic.ctx = new AudioContext({sampleRate: RATE});  // the browser resamples the microphone to 16 kHz
    const code = new Blob([`(${tapProcessor})()`], {type: 'application/javascript'});
    try {
      await mic.ctx.audioWorklet.addModule(URL.createObjectURL(code));
    } catch (error) {
      stop(problemText(error));
      return false;
    }
    const tap = new AudioWorkletNode(mic.ctx, 'speakstream-tap', {numberOfOutputs: 0});
    tap.port.onmessage = (event) => frame(event.data);
    mic.ctx.createMediaStreamSource(mic.stream).connect(tap);
    mic.sending = false;
    mic.before = [];
    return true;
  }
  function stop(text = '') {
    if (mic.stream) mic.stream.getTracks().forEach((track) => track.stop());
    if (mic.ctx) mic.ctx.close();
    Object.assign(mic, {stream: null, ctx: null, sending: false});
    meter.value = 0;
    show('off', text);
  }

  // Each 32 ms of audio: the meter, the gate, and what is sent.
  function frame(floats) {
    const level = rms(floats);
    meter.value = Math.min(1, level * 8);
    const open = mic.gate.feed(level);
    const samples = toInt16(floats);
    if (!mic.sending) {
      mic.before.push(samples);
      if (mic.before.length > BEFORE_FRAMES) mic.before.shift();
      // Push-to-talk sends from the click; hands-free once something louder than the room is heard.
      if (!handsFree.checked || !open) return;
      mic.sending = true;
      sender.restart();
      note('send');
      for (const kept of mic.before.splice(0)) sender.push(kept);
      return;
    }
    sender.push(samples);
  }

  // The server's answer to a piece.
  function heard(answer) {
    note('heard', {state: answer.state});
    if (['speaking', 'paused'].includes(answer.state) && mic.state !== 'hearing') {
      show('hearing', 'Hearing you…');
      // Barge-in: the reply being written or spoken stops, as with Stop.
      if (window.speakstreamPlayer) window.speakstreamPlayer.stop();
      const stopButton = document.querySelector('#stop');
      if (stopButton) stopButton.click();
      note('barge-in');
    }
    if (answer.state === 'paused') {
      // The user paused: the answer is prepared now, and shown if the pause ends the turn.
      trigger('submit', {listening: id, early: true});
    } else if (['ended', 'answered'].includes(answer.state)) {
      mic.sending = false;
      note('ended');
      if (answer.state === 'ended') trigger('submit', {listening: id});  // 'answered': already on its way
      if (handsFree.checked) show('listening', 'Listening…');
      else stop('');
    } else if (['idle', 'no_speech', 'too_long', 'error', 'off'].includes(answer.state)) {
      mic.sending = false;
      if (!handsFree.checked || answer.state === 'off') stop(answer.message || '');
      else show('listening', answer.message || 'Listening…');
    }
  }

  button.addEventListener('click', async () => {
    if (mic.state === 'off') {
      show('listening', handsFree.checked ? 'Listening…' : 'Listening: speak, then click Send or pause');
      if (!await start()) return;
      if (!handsFree.checked) { mic.sending = true; sender.restart(); }
    } else if (!handsFree.checked && mic.sending) {
      sender.finish();  // push-to-talk: the user says they are done
      mic.sending = false;
    } else {
      stop('');
    }
  });
  handsFree.addEventListener('change', () => {
    if (mic.state !== 'off') stop('');
  });
  show('off', '');
}

if (typeof module !== 'undefined') module.exports = {createGate, createSender, toInt16};
else mount(element, trigger, server);
