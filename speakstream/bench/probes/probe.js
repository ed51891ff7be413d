// Polls every 5 ms in the page: when Enter was pressed, when the reply's first text showed,
// when sound was first audible, and (HLS) every stretch where the audio clock stood still.
() => {
  const m = window.__probe = {t0: null, text: null, audio: null, heardAt: null, stalls: [], last: -1, still: null};
  document.addEventListener('keydown', (e) => { if (e.key === 'Enter') m.t0 = performance.now(); }, true);
  setInterval(() => {
    if (m.t0 === null) return;
    const now = performance.now();
    const bots = document.querySelectorAll('#chat .bot');  // textContent: no layout forced every 5 ms
    if (m.text === null && bots.length && bots[bots.length - 1].textContent.trim()) m.text = now - m.t0;
    const player = window.speakstreamPlayer;
    if (player) {
      if (m.audio === null && player.level() > 0.001) {
        m.audio = now - m.t0;
        m.heardAt = performance.timeOrigin + now;
      }
      return;
    }
    const a = document.querySelector('#reply-audio audio');
    if (!a || a.currentTime === 0) return;
    if (m.audio === null) m.audio = now - m.t0;
    if (a.currentTime !== m.last) {
      if (m.still !== null && now - m.still > 150) m.stalls.push({at: m.last, ms: now - m.still});
      m.last = a.currentTime; m.still = null;
    } else if (m.still === null) { m.still = now; }
  }, 5);
}
