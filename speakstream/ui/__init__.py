"""The page: its layout, its event handlers, the audio player, what the browser keeps."""
