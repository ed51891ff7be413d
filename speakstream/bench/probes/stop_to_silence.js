// Milliseconds from Stop until the reply is silent (Web Audio: the analyser hears nothing; HLS: paused).
() => new Promise((resolve) => {
  const p = window.speakstreamPlayer, a = document.querySelector('#reply-audio audio');
  const t0 = performance.now();
  document.querySelector('#stop').click();
  const check = () => {
    const silent = p ? p.level() === 0 && p.sources.length === 0 : a.paused;
    if (silent) resolve(performance.now() - t0); else setTimeout(check, 1);
  };
  check();
})
