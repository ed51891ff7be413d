// What the page's microphone and player did, for `bench voice`: when each microphone event was
// first logged (page clock, ms; null: not yet), how often, and what the player is doing (before
// the page has made its microphone and player: nothing yet).
() => {
  const log = () => window.speakstreamMicrophone?.log ?? [];
  const mic = window.__mic = {
    at: (event) => { const found = log().find((entry) => entry.event === event); return found ? found.at : null; },
    count: (event) => log().filter((entry) => entry.event === event).length,
    lastBefore: (event, time) => {
      const found = log().filter((entry) => entry.event === event && entry.at <= time).pop();
      return found ? found.at : null;
    },
    state: () => window.speakstreamMicrophone?.state,
    speaking: () => window.speakstreamPlayer?.state === 'speaking',
    silent: () => window.speakstreamPlayer?.level() === 0,
    played: () => Boolean(window.speakstreamPlayer?.done && window.speakstreamPlayer.sources.length === 0),
    playedOrInterrupted: () => mic.played() || mic.at('barge-in') !== null,
  };
}
