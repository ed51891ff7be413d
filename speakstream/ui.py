"""The Gradio Blocks page: chat, message box, Send / Stop / Clear, and the streaming audio output.

Event handlers are module-level functions bound to the pipeline with ``functools.partial``,
so tests can call them without a browser. The chat event is published as ``/chat`` for
``gradio_client``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from speakstream.conversation import InvalidMessage, clean_message, to_model_messages
from speakstream.model import Sampling
from speakstream.pipeline import ReplyPipeline
from speakstream.settings import Settings

log = logging.getLogger(__name__)

History = list[dict[str, Any]]
ChatOutputs = tuple[Any, History, Any]


def respond(
    pipeline: ReplyPipeline, settings: Settings, message: str, history: History | None
) -> Iterator[ChatOutputs]:
    """Stream one reply into the chat: (message box, chat history, audio) per update.

    A message that cannot be sent stays in the box and the user sees why; an error while
    generating ends this reply with a note in the chat and leaves the app serving others.
    """
    history = list(history or [])
    try:
        text = clean_message(message or "", settings.max_input_chars)
    except InvalidMessage as problem:
        gr.Warning(str(problem))
        yield gr.skip(), history, gr.skip()
        return
    messages = [*to_model_messages(history, settings.system_prompt), {"role": "user", "content": text}]
    history += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
    yield "", history, gr.skip()
    stop = threading.Event()
    try:
        for update in pipeline.reply(messages, stop, Sampling.from_settings(settings)):
            history[-1] = {"role": "assistant", "content": update.text}
            yield gr.skip(), history, gr.skip()
    except Exception:
        log.exception("Reply failed")
        history[-1] = {
            "role": "assistant",
            "content": (history[-1]["content"] + "\n\n" if history[-1]["content"] else "")
            + "Sorry, something went wrong while writing this reply. Please try again.",
        }
        yield gr.skip(), history, gr.skip()
    finally:
        stop.set()


def clear_chat() -> tuple[History, str, None]:
    """Empty the conversation, the message box and the player."""
    return [], "", None


def build_ui(pipeline: ReplyPipeline, settings: Settings) -> gr.Blocks:
    """The whole page, wired to ``pipeline``; the caller launches it."""
    source = pipeline.model.source.origin if pipeline.model.source else "not loaded"
    with gr.Blocks(title="SpeakStream") as demo:
        gr.Markdown("# SpeakStream\nA chatbot that speaks its replies while it writes them.")
        chatbot = gr.Chatbot(label="Conversation", height=460, sanitize_html=True, allow_tags=False, elem_id="chat")
        audio = gr.Audio(label="Spoken reply", streaming=True, autoplay=True, interactive=False, elem_id="reply-audio")
        with gr.Row():
            message = gr.Textbox(
                label="Message",
                placeholder="Type a message and press Enter",
                scale=6,
                max_lines=6,
                elem_id="message",
            )
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        with gr.Row():
            stop = gr.Button("Stop", variant="stop", elem_id="stop")
            clear = gr.Button("Clear", elem_id="clear")
        gr.Markdown(f"Model: {source}", elem_id="status")

        handler = functools.partial(respond, pipeline, settings)
        chat_io: dict[str, Any] = {"inputs": [message, chatbot], "outputs": [message, chatbot, audio]}
        submitted = message.submit(handler, api_name="chat", **chat_io)
        clicked = send.click(handler, api_visibility="private", **chat_io)
        stop.click(None, cancels=[submitted, clicked], api_visibility="private")
        clear.click(
            clear_chat, outputs=[chatbot, message, audio], cancels=[submitted, clicked], api_visibility="private"
        )
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_size)
    return demo
