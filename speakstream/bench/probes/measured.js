// What the probe measured, and whether the page plays through the Web Audio player.
() => ({...window.__probe, webaudio: Boolean(window.speakstreamPlayer)})
