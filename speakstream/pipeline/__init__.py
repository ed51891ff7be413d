"""One spoken reply: the model writes, the chunker cuts, the voice speaks, all at once."""
