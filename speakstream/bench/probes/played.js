() => {
  const p = window.speakstreamPlayer;
  if (p) return p.done && p.sources.length === 0;
  const a = document.querySelector('#reply-audio audio');
  return Boolean(a) && (a.ended || a.paused) && a.currentTime > 0;
}
