"""The baseline of ``bench voice``: what a Gradio user first writes for voice input. Gradio's own
microphone recorder (record, then stop), its recording submitted when it stops, recognized by the
same Whisper, answered by the same model and voice, and the whole reply's audio played by an
autoplaying ``gr.Audio``. Served in the bench's own process."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from speakstream.hearing.audio_in import to_rate
from speakstream.ui.handlers import ChatApp, ChatView, respond


def recorder_page(app: ChatApp) -> gr.Blocks:
    """Record → stop → the transcript and the whole reply, spoken."""

    def answer(recording: tuple[int, np.ndarray] | None, history: list | None) -> tuple[Any, Any]:
        if recording is None:
            return history, None
        rate, samples = recording
        floats = samples.astype(np.float32) / (32768.0 if samples.dtype == np.int16 else 1.0)
        floats = floats.mean(axis=1) if floats.ndim == 2 else floats
        words = app.recognition.transcriber.transcribe(to_rate(floats, rate)).text
        view = ChatView.of(list(respond(app, words, history or []))[-1])
        return view.history, view.replay

    with gr.Blocks(title="Gradio's recorder") as demo:
        recorder = gr.Audio(sources=["microphone"], type="numpy", label="Speak", elem_id="recorder")
        chat = gr.Chatbot(elem_id="chat")
        spoken = gr.Audio(autoplay=True, elem_id="answer", label="Reply")
        recorder.stop_recording(answer, [recorder, chat], [chat, spoken])
    return demo
