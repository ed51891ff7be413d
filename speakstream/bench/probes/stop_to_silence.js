// Milliseconds from Stop until the reply is silent (the analyser hears nothing, nothing is scheduled).
() => new Promise((resolve) => {
  const p = window.speakstreamPlayer;
  const t0 = performance.now();
  document.querySelector('#stop').click();
  const check = () => {
    if (p.level() === 0 && p.sources.length === 0) resolve(performance.now() - t0); else setTimeout(check, 1);
  };
  check();
})
