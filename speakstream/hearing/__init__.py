"""What the user says: their audio checked (``audio_in``), voice activity and the end of their turn
(``speech_activity``, ``turns``), one listening page's utterance (``listener``), and the words
(``transcriber``)."""
