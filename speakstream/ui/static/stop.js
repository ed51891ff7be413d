// Silences the reply that is playing (and the replay); passes a handler's inputs on unchanged.
(...args) => {
  window.speakstreamPlayer?.stop();
  document.querySelectorAll('audio').forEach((a) => a.pause());
  return args;
}
