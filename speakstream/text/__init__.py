"""Text on its way in and out: admitting messages, the conversation, cutting replies into speakable chunks."""
