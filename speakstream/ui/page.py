"""The Gradio Blocks page: chat, message box, Send / Stop / Retry / Undo / Clear, the player, settings.

Every event is wired here to a handler of :mod:`speakstream.ui.handlers` (the chat event is
published as ``/chat`` for ``gradio_client``); the player is :mod:`speakstream.ui.player`,
what the browser keeps is :mod:`speakstream.ui.browser_storage`.
"""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from speakstream.controls import BY_NAME
from speakstream.llm.sources import model_label
from speakstream.settings import Settings
from speakstream.ui.admit import REPLY_CONTROLS
from speakstream.ui.browser_storage import SAVED_CONTROLS, clear_chat, remember_chat, remember_settings, restore
from speakstream.ui.examples import EXAMPLE_PROMPTS
from speakstream.ui.handlers import CHAT_OUTPUTS, ChatApp, ask_again, last_turn_removed, supersede
from speakstream.ui.loading import load_model, load_voice
from speakstream.ui.microphone import microphone_component
from speakstream.ui.own_voice import CONSENT, OwnVoicePage
from speakstream.ui.player import CLEAR_JS, RESTORED_JS, STOP_JS, player_component
from speakstream.ui.spoken import SpokenMessages
from speakstream.voices import VoiceSet
from speakstream.voices.own import OWN, OWN_LABEL

# Status lines of picked models (and, apart, voices) followed at once; more wait in the queue.
PICKS_AT_ONCE = 4


def toggle_stats(show: bool) -> dict[str, Any]:
    """Show or hide the per-reply timing line."""
    return gr.update(visible=show)


def voice_status(voices: VoiceSet) -> str:
    """The line under the page that says which voice speaks, and why if it is not the usual one."""
    voice = voices.get(None)
    lines = [f"**Voice:** {voice.label}" if voice else "**Voice:** none (text only)"]
    lines += [f"- {notice}" for notice in voices.notices]
    return "\n".join(lines)


def hearing_status(app: ChatApp) -> str:
    """The line under the page that says what hears spoken messages, and in which language."""
    if app.recognition is None:
        return "**Speech recognition:** off (type your messages)"
    transcriber = app.recognition.transcriber
    line = f"**Speech recognition:** {transcriber.label}"
    if not transcriber.multilingual:
        line += " · English only: speak English, whatever the voice's language"
    return line + (f"\n- {transcriber.notice}" if transcriber.notice else "")


def slider(name: str, settings: Settings, **layout: Any) -> gr.Slider:
    """The slider of a number control, as the table declares it, starting at the operator's setting."""
    control, setting = BY_NAME[name], getattr(settings, name)
    return gr.Slider(
        control.low,
        control.highest(setting),
        value=setting,
        step=control.step,
        label=control.label,
        elem_id=name.replace("_", "-"),
        **layout,
    )


def build_ui(app: ChatApp) -> gr.Blocks:
    """The whole page, wired to ``app``; the caller launches it."""
    settings = app.settings
    source = app.models.default.source.origin if app.models.default.source else "not loaded"
    # No usage analytics leave the server; Gradio's own temporary files are deleted once old enough.
    age = settings.audio_file_max_age
    with gr.Blocks(title="SpeakStream", delete_cache=(min(600, age), age), analytics_enabled=False) as demo:
        gr.Markdown("# SpeakStream\nA chatbot that speaks its replies while it writes them.")
        chatbot = gr.Chatbot(
            label="Conversation",
            height=420,
            sanitize_html=True,
            allow_tags=False,
            buttons=["copy", "copy_all"],
            elem_id="chat",
        )
        with gr.Row():
            message = gr.Textbox(
                label="Message",
                placeholder="Type a message and press Enter",
                scale=6,
                min_width=200,
                max_lines=6,
                elem_id="message",
            )
            send = gr.Button("Send", variant="primary", scale=1, min_width=70, elem_id="send")
        microphone = microphone_component(app)
        # For API callers: a spoken message as a WAV file (base64); see the README
        spoken_audio = gr.Textbox(visible=False, label="audio")
        with gr.Row():
            # Narrow buttons, so the four stay on one line on a phone
            stop = gr.Button("Stop", variant="stop", min_width=60, elem_id="stop")
            retry = gr.Button("Retry", min_width=60, elem_id="retry")
            undo = gr.Button("Undo", min_width=60, elem_id="undo")
            clear = gr.Button("Clear", min_width=60, elem_id="clear")
        gr.Examples(EXAMPLE_PROMPTS, inputs=[message], label="Try one")
        player = player_component()
        stats = gr.Markdown("", elem_id="stats")
        with gr.Accordion("Voice and replay", open=False):
            with gr.Row():
                voice = gr.Dropdown(
                    choices=[*app.voices.choices, *([(OWN_LABEL, OWN)] if app.own_voices is not None else [])],
                    value=app.voices.default,
                    label=BY_NAME["voice"].label,
                    interactive=bool(app.voices.voices),
                    elem_id="voice",
                )
                voice_status_line = gr.Markdown("", elem_id="voice-status")
                speaking_rate = slider("speaking_rate", settings, min_width=200)
            with gr.Row():
                text_only = gr.Checkbox(value=settings.text_only, label=BY_NAME["text_only"].label)
                show_stats = gr.Checkbox(value=True, label=BY_NAME["show_stats"].label)
            replay = gr.Audio(
                label="Whole reply (replay or download)", interactive=False, buttons=["download"], elem_id="replay"
            )
        with gr.Accordion("Your voice", open=False, visible=app.own_voices is not None):
            gr.Markdown(CONSENT, elem_id="own-voice-consent")
            clip = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Your clip", elem_id="own-voice-clip"
            )
            with gr.Row():
                make = gr.Button("Make my voice", variant="primary", elem_id="make-voice")
                forget = gr.Button("Forget my voice", elem_id="forget-voice")
            own_status = gr.Markdown("", elem_id="own-voice-status")
        with gr.Accordion("Model settings", open=False):
            model = gr.Dropdown(
                choices=[(model_label(spec), spec) for spec in app.models.choices],
                value=app.models.default_spec,
                label=BY_NAME["model"].label,
                info="Loaded when picked, then shared by everyone"
                + ("; type a Hugging Face model id for another one" if settings.allow_custom_models else ""),
                allow_custom_value=settings.allow_custom_models,
                elem_id="model",
            )
            model_status = gr.Markdown("", elem_id="model-status")
            system_prompt = gr.Textbox(
                value=settings.system_prompt,
                label=BY_NAME["system_prompt"].label,
                placeholder="Empty: the model's own default",
                lines=2,
                elem_id="system-prompt",
            )
            with gr.Row():
                temperature = slider("temperature", settings)
                top_p = slider("top_p", settings)
                max_new_tokens = slider("max_new_tokens", settings)
                repetition_penalty = slider("repetition_penalty", settings)
        engine = getattr(app.models.default, "engine", "")
        gr.Markdown(
            f"{voice_status(app.voices)}\n\n**Model:** {source}"
            + (f" · runs with {engine}" if engine else "")
            + f"\n\n{hearing_status(app)}",
            elem_id="status",
        )

        session = gr.State({})
        secret = settings.storage_secret or None  # None: Gradio makes one at each start
        saved_chat = gr.BrowserState(None, storage_key="speakstream-chat", secret=secret)
        # What a reply's updates show, by ChatView's names.
        shown = {
            "message": message,
            "history": chatbot,
            "player": player,
            "replay": replay,
            "stats": stats,
            "saved": saved_chat,
        }
        saved_settings = gr.BrowserState(None, storage_key="speakstream-settings", secret=secret)
        named = {
            "voice": voice,
            "speaking_rate": speaking_rate,
            "text_only": text_only,
            "show_stats": show_stats,
            "system_prompt": system_prompt,
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "repetition_penalty": repetition_penalty,
            "model": model,
        }
        controls = [named[name] for name in SAVED_CONTROLS]
        quick: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None}
        # Replies share one concurrency limit; quick events (Clear, Undo, saving) never wait behind them.
        # A new message first stops this session's running reply (a quick step, answered directly
        # rather than through the queue: one round trip less before the reply starts), then waits
        # for a place; a message sent while a reply runs is taken, never dropped ("multiple").
        reply: dict[str, Any] = {
            "fn": app.chat,
            "inputs": [message, chatbot, *(named[name] for name in REPLY_CONTROLS), session],
            "outputs": [shown[name] for name in CHAT_OUTPUTS],
            "concurrency_limit": settings.concurrency_limit,
            "concurrency_id": "reply",
            "trigger_mode": "multiple",
            "show_progress_on": [chatbot],  # not on the player: its controls stay usable
        }
        new_message: dict[str, Any] = {
            "fn": supersede,
            "inputs": [session],
            "js": STOP_JS,
            "trigger_mode": "multiple",
            "queue": False,
            **quick,
        }
        keep_chat: dict[str, Any] = {"fn": remember_chat, "inputs": [chatbot], "outputs": [saved_chat], **quick}
        submitted = message.submit(**new_message).then(api_name="chat", **reply)
        clicked = send.click(**new_message).then(api_visibility="private", **reply)
        retried = (
            retry.click(**new_message)
            .then(ask_again, inputs=[session], **quick)
            .then(last_turn_removed, inputs=[chatbot], outputs=[message, chatbot], **quick)
            .then(api_visibility="private", **reply)
        )
        spoken_reply = {**reply, "inputs": reply["inputs"][1:], "api_visibility": "private"}
        speech = SpokenMessages(app)
        said = microphone.submit(**{**spoken_reply, "fn": speech.heard})
        talk = {**reply, "fn": speech.talk, "inputs": [spoken_audio, *reply["inputs"][1:]]}
        talked = spoken_audio.submit(**talk, api_name="talk")
        replies = [submitted, clicked, retried, said, talked]
        undo.click(
            last_turn_removed, inputs=[chatbot], outputs=[message, chatbot], js=STOP_JS, cancels=replies, **quick
        ).then(**keep_chat)
        show_stats.change(toggle_stats, inputs=[show_stats], outputs=[stats], **quick)
        stop.click(None, js=STOP_JS, cancels=replies, **quick).then(**keep_chat)
        # Our Clear button and the chat's own trash icon do the same
        gr.on(
            [clear.click, chatbot.clear],
            clear_chat,
            outputs=[chatbot, message, player, replay, stats, saved_chat, saved_settings],
            js=CLEAR_JS,
            cancels=replies,
            **quick,
        )
        # Making a voice takes a core for a few seconds: one at a time, in its own line of the queue.
        own_voice = OwnVoicePage(app)
        make.click(
            own_voice.make,
            inputs=[clip, voice, session],
            outputs=[own_status, voice, clip],
            api_name="make_voice",
            concurrency_limit=1,
            concurrency_id="make_voice",
        )
        forget.click(
            own_voice.forget,
            inputs=[voice, session],
            outputs=[own_status, voice, clip],
            api_name="forget_voice",
        )
        demo.unload(own_voice.closed)
        # A picked model or voice loads on its loader thread; the status line that follows it holds a
        # worker thread for a moment every second, so only a few such lines run at once.
        for picker, follow, status_line in ((model, load_model, model_status), (voice, load_voice, voice_status_line)):
            picker.change(
                functools.partial(follow, app),
                inputs=[picker],
                outputs=[status_line],
                api_visibility="private",
                concurrency_limit=PICKS_AT_ONCE,
                concurrency_id=follow.__name__,
            )
        # Saved when a setting changes (restoring them saves what was saved: the same values).
        gr.on(
            [control.change for control in controls],
            remember_settings,
            inputs=controls,
            outputs=[saved_settings],
            trigger_mode="always_last",
            **quick,
        )
        demo.load(
            functools.partial(restore, app.voices, app.models),
            inputs=[saved_chat, saved_settings],
            outputs=[chatbot, *controls],
            **quick,
        ).then(None, js=RESTORED_JS, **quick)
    demo.queue(max_size=settings.queue_size)
    # Gradio has no public size for its queue nor count of its sessions (its state holder, set up at
    # launch, keeps one entry per session); read them where Gradio keeps them (gradio pinned;
    # tests/test_served_rules.py, tests/test_adversarial.py).
    app.metrics.replies_waiting.set_function(lambda: len(demo._queue))
    app.metrics.sessions.set_function(lambda: len(demo.state_holder.session_data))
    app.metrics.models_loaded.set_function(lambda: len(app.models.loaded))
    return demo
