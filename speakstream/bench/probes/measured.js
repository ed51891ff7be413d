// What the probe measured.
() => window.__probe
