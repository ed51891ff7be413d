// The reply's audio has all been handed to the player and played.
() => {
  const p = window.speakstreamPlayer;
  return p.done && p.sources.length === 0;
}
