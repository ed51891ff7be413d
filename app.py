"""SpeakStream entry point: `python app.py --help` lists every flag."""

import sys

from speakstream.server import main

if __name__ == "__main__":
    sys.exit(main())
