"""SpeakStream: a chatbot that speaks its replies while it writes them."""
