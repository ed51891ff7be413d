"""How the user speaks to the app: the page's microphone (``static/microphone.js``), which sends
what it hears to the server function made here while the user speaks, then asks for the answer."""

from __future__ import annotations

from typing import Any

import gradio as gr

from speakstream.ui import spoken
from speakstream.ui.handlers import ChatApp
from speakstream.ui.player import front_end
from speakstream.ui.request_identity import client_address


def microphone_component(app: ChatApp) -> gr.HTML:
    """The microphone's controls; its ``submit`` event asks for the answer to what was said."""

    def hear(piece: Any, request: gr.Request) -> dict[str, str]:
        # Gradio passes its web request here (not a gr.Request): its address and headers are what count
        return spoken.hear(app, piece, client_address(request, app.settings.proxy_hops))

    return gr.HTML(
        value=None,
        html_template=f"<style>{front_end('microphone.css')}</style>{front_end('microphone.html')}",
        js_on_load=front_end("microphone.js"),
        server_functions=[hear],
        elem_id="microphone",
        label="Speak",
        visible=True if app.listeners is not None else "hidden",
    )
