// Silences the reply that is playing (and the replay) and forgets it; passes a handler's inputs on unchanged.
(...args) => {
  window.speakstreamPlayer?.clear();
  document.querySelectorAll('audio').forEach((a) => a.pause());
  return args;
}
