// The Web Audio player's scheduling (speakstream/ui/static/player.js), on a fake audio context
// whose clock the test sets: run with `node --test tests/js/`.
const test = require('node:test');
const assert = require('node:assert/strict');
const {createPlayer} = require('../../speakstream/ui/static/player.js');

const RATE = 1000;

// An AudioContext as far as the player uses it: a clock the test moves, and sources it can end.
function fakeContext() {
  const ctx = {
    currentTime: 0, state: 'running', destination: {}, started: [],
    createGain: () => ({gain: {value: 1}, connect() {}}),
    createAnalyser: () => ({fftSize: 0, connect() {}, getFloatTimeDomainData() {}}),
    createBuffer: (channels, length, rate) => ({duration: length / rate, copyToChannel() {}}),
    createBufferSource: () => {
      const source = {
        connect() {},
        start(at) { source.at = at; ctx.started.push(source); },
        stop() { source.stopped = true; },
      };
      return source;
    },
  };
  return ctx;
}

// `seconds` of a quiet tone as the server sends it: 16-bit PCM in base64.
function pcm(seconds) {
  const samples = new Int16Array(Math.round(seconds * RATE)).fill(1000);
  return Buffer.from(samples.buffer).toString('base64');
}

function update(reply, indices, done = false) {
  const segments = {};
  for (const index of indices) segments[index] = {pcm: pcm(0.5), text: `segment ${index}`};
  return {reply, rate: RATE, segments, done};
}

function newPlayer() {
  const ctx = fakeContext();
  return {ctx, player: createPlayer({newContext: () => ctx})};
}

test('segments play back to back in index order, each once however often an update repeats it', () => {
  const {ctx, player} = newPlayer();
  player.receive(update('r1', [0]));
  player.receive(update('r1', [0, 1]));
  player.receive(update('r1', [0, 1]));
  player.receive(update('r1', [1, 2], true));
  assert.deepEqual(player.log.map((entry) => entry.index), [0, 1, 2]);
  assert.equal(ctx.started.length, 3);
  const [first, second, third] = ctx.started;
  assert.equal(second.at, first.at + 0.5, 'no gap while the server is ahead');
  assert.equal(third.at, second.at + 0.5);
  assert.equal(player.state, 'speaking');
  assert.equal(player.done, true);
  assert.equal(player.lost, 0);
});

test('a stopped reply goes silent at once, its late segments are dropped, and the state is stopped', () => {
  const {ctx, player} = newPlayer();
  player.receive(update('r1', [0, 1]));
  player.stop();
  assert.ok(ctx.started.every((source) => source.stopped), 'every scheduled segment stopped');
  assert.equal(player.state, 'stopped');
  assert.equal(player.getQueueLength(), 0);
  player.receive(update('r1', [1, 2, 3], true));
  assert.equal(ctx.started.length, 2, 'nothing of the stopped reply plays');
  assert.equal(player.state, 'stopped');
  player.receive(update('r2', [0]));
  assert.equal(ctx.started.length, 3, 'the next reply plays');
  assert.equal(player.state, 'speaking');
});

test('a new reply silences the one before and starts from its own first segment', () => {
  const {ctx, player} = newPlayer();
  player.receive(update('r1', [0, 1]));
  player.receive(update('r2', [0]));
  assert.ok(ctx.started.slice(0, 2).every((source) => source.stopped));
  assert.deepEqual(player.sources.map((item) => [item.reply, item.index]), [['r2', 0]]);
});

test('a segment that comes after the one before has played is counted as an underrun', () => {
  const {ctx, player} = newPlayer();
  player.receive(update('r1', [0]));
  ctx.currentTime = 2;  // segment 0 ended at 0.505
  player.receive(update('r1', [0, 1]));
  assert.equal(player.underruns, 1);
  assert.ok(ctx.started[1].at > 2, 'it plays as soon as it can');
});

test('updates merged on the way lose segments only beyond what one carries, and say so', () => {
  const {player} = newPlayer();
  player.receive(update('r1', [0]));
  player.receive(update('r1', [3, 4]));
  assert.deepEqual(player.log.map((entry) => entry.index), [0, 3, 4]);
  assert.equal(player.lost, 2);
});

test('a segment ended is let go, and once all have ended the player is idle', () => {
  const {ctx, player} = newPlayer();
  player.receive(update('r1', [0, 1], true));
  for (const source of ctx.started) source.onended();
  assert.equal(player.getQueueLength(), 0);
  assert.equal(player.played, 2);
  assert.equal(player.state, 'idle');
});
