"""Audio on its way out: segments at one rate without clicks, and the whole reply's file."""
