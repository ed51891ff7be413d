// Polls every 5 ms in the page: when the spoken message showed as the user's turn, and when the
// reply's first sound was audible (page clock, ms), for a page whose microphone speaks.
() => {
  const m = window.__spoken = {users: document.querySelectorAll('#chat .user').length, shown: null, audio: null};
  setInterval(() => {
    const now = performance.now();
    if (m.shown === null && document.querySelectorAll('#chat .user').length > m.users) m.shown = now;
    if (m.shown !== null && m.audio === null && window.speakstreamPlayer.level() > 0.001) m.audio = now;
  }, 5);
}
