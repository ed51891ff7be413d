// The silences between segments the player scheduled (a segment that came late).
() => {
  const log = window.speakstreamPlayer.log;
  const stalls = [];
  for (let i = 1; i < log.length; i++) {
    const gap = log[i].start - log[i - 1].end;
    if (gap >= 0.15) stalls.push({at: log[i - 1].end - log[0].start, ms: gap * 1000});
  }
  return stalls;
}
