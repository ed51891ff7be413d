// The microphone's gate and sender (speakstream/ui/static/microphone.js): what the page sends to
// the server, and when. Run with `node --test tests/js/`.
const test = require('node:test');
const assert = require('node:assert/strict');
const {createGate, createSender} = require('../../speakstream/ui/static/microphone.js');

test('the gate stays shut on a steady room noise and opens on a voice louder than it', () => {
  const gate = createGate();
  // It learns the room within 10 frames (0.3 s); after that the noise never opens it.
  for (let i = 0; i < 200; i++) assert.equal(gate.feed(0.01 + 0.002 * Math.sin(i)), i < 10 ? gate.open : false);
  assert.equal(gate.feed(0.1), true);
});

test('the gate never opens on near silence, and follows the room when it gets quieter', () => {
  const gate = createGate();
  for (let i = 0; i < 100; i++) assert.equal(gate.feed(0.001), false);
  for (let i = 0; i < 200; i++) gate.feed(0.05);  // a loud room: the floor rises slowly
  for (let i = 0; i < 50; i++) gate.feed(0.002);  // quiet again: the floor falls quickly
  assert.equal(gate.feed(0.03), true);
});

// A server function the test answers when it likes.
function fakeServer() {
  const server = {calls: [], answers: []};
  server.hear = (piece) => new Promise((resolve) => server.calls.push({piece, resolve}));
  server.answer = (index, state) => server.calls[index].resolve({state, message: ''});
  return server;
}

const samples = (...values) => Int16Array.from(values);
const decoded = (piece) => Array.from(new Int16Array(Uint8Array.from(atob(piece.pcm), (c) => c.charCodeAt(0)).buffer));
const tick = () => new Promise((resolve) => setImmediate(resolve));

test('pieces go one at a time, in order; what arrives meanwhile goes with the next one', async () => {
  const server = fakeServer();
  const heard = [];
  const sender = createSender({id: 'page', hear: server.hear, heard: (answer) => heard.push(answer.state)});
  sender.push(samples(1, 2));
  sender.push(samples(3));
  sender.push(samples(4, -5));
  assert.equal(server.calls.length, 1);
  assert.deepEqual(decoded(server.calls[0].piece), [1, 2]);
  assert.equal(server.calls[0].piece.first, true);
  assert.equal(server.calls[0].piece.id, 'page');
  server.answer(0, 'quiet');
  await tick();
  assert.equal(server.calls.length, 2);
  assert.deepEqual(decoded(server.calls[1].piece), [3, 4, -5]);
  assert.equal(server.calls[1].piece.first, false);
  server.answer(1, 'speaking');
  await tick();
  assert.deepEqual(heard, ['quiet', 'speaking']);
  assert.equal(server.calls.length, 2, 'nothing more to send');
});

test('finishing sends what is left marked last; a restart begins again with a first piece', async () => {
  const server = fakeServer();
  const sender = createSender({id: 'page', hear: server.hear, heard: () => {}});
  sender.push(samples(1));
  sender.push(samples(2));
  sender.finish();
  server.answer(0, 'speaking');
  await tick();
  assert.equal(server.calls[1].piece.last, true);
  assert.deepEqual(decoded(server.calls[1].piece), [2]);
  server.answer(1, 'ended');
  await tick();
  sender.restart();
  sender.push(samples(7));
  assert.equal(server.calls[2].piece.first, true);
});

test('a server that does not answer gives an error the page can show', async () => {
  const heard = [];
  const sender = createSender({id: 'page', hear: () => Promise.reject(new Error('offline')), heard: (a) => heard.push(a)});
  sender.push(samples(1));
  await tick();
  await tick();
  assert.equal(heard[0].state, 'error');
  assert.match(heard[0].message, /did not answer/);
});
