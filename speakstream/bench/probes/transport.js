// Web Audio: from the server handing out the reply's first segment to its first sound.
() => {
  const p = window.speakstreamPlayer, m = window.__probe;
  const first = p.log.find((entry) => entry.reply === p.reply && entry.index === 0);
  return first && first.sent && m.heardAt ? m.heardAt - first.sent : null;
}
