// The probe has heard the reply's first sound.
() => window.__probe.audio !== null
