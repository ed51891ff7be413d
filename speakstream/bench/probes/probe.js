// Polls every 5 ms in the page: when Enter was pressed, when the reply's first text showed,
// and when the player's first sound was audible.
() => {
  const m = window.__probe = {t0: null, text: null, audio: null, heardAt: null};
  document.addEventListener('keydown', (e) => { if (e.key === 'Enter') m.t0 = performance.now(); }, true);
  setInterval(() => {
    if (m.t0 === null) return;
    const now = performance.now();
    const bots = document.querySelectorAll('#chat .bot');  // textContent: no layout forced every 5 ms
    if (m.text === null && bots.length && bots[bots.length - 1].textContent.trim()) m.text = now - m.t0;
    if (m.audio === null && window.speakstreamPlayer.level() > 0.001) {
      m.audio = now - m.t0;
      m.heardAt = performance.timeOrigin + now;
    }
  }, 5);
}
