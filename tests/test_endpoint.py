"""A model on another server (``--llm-endpoint``): replies stream from its OpenAI-compatible API.

Fast tests run against a small HTTP server the test scripts (it answers, fails before a
reply, or breaks off in the middle, as told); the slow ones against a real one,
``transformers serve`` on the bundled model, through the real pipeline and voice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from speakstream.llm.endpoint import EndpointError, EndpointModel
from speakstream.llm.model import ReplyGate, Sampling
from speakstream.llm.sources import ModelLoadError
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.voices import VoiceSet

from support import free_port

SAMPLING = Sampling(temperature=0.2, top_p=0.9, repetition_penalty=1.15, max_new_tokens=64)
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


class FakeModelServer(ThreadingHTTPServer):
    """Answers /v1/models and streams /v1/chat/completions (and nothing else) as the test says: ``plan`` holds, per
    request, the pieces to send and whether to break off after them ("drop": before any)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.plan: list[tuple[list[str], str]] = []
        self.requests: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeModelServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def unknown_path(self, path: str) -> bool:
        """A real server has no other address (a client that doubles /v1 gets a 404)."""
        if self.path == path:
            return False
        self.send_error(404)
        return True

    def do_GET(self) -> None:
        if self.unknown_path("/v1/models"):
            return
        body = json.dumps({"data": [{"id": "scripted"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.unknown_path("/v1/chat/completions"):
            return
        self.server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        pieces, ending = self.server.plan.pop(0)
        if ending == "drop":
            self.close_connection = True
            return  # no answer at all
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in pieces:
            chunk = {"choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        if ending == "done":
            self.wfile.write(b"data: [DONE]\n\n")
        elif ending == "finish":  # some servers end with a finish_reason and no [DONE]
            self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {}, 'finish_reason': 'stop'}]})}\n\n".encode())
        self.close_connection = True


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    running = FakeModelServer()
    yield running
    running.shutdown()


def served(url: str, **overrides: object) -> EndpointModel:
    settings = Settings(llm_endpoint=url, llm_endpoint_model="scripted", llm_endpoint_timeout=5, **overrides)
    return EndpointModel(settings).load()


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_address_is_taken_with_or_without_v1_as_every_openai_client_takes_it(
    server: FakeModelServer, suffix: str
) -> None:
    server.plan = [(["Paris"], "done")]
    assert list(served(server.url + suffix).stream_reply(FRANCE, SAMPLING)) == ["Paris"]


def test_a_reply_streams_piece_by_piece_with_the_conversation_and_sampling_sent(server: FakeModelServer) -> None:
    server.plan = [(["Paris", " is", " the capital."], "done")]
    model = served(server.url)
    assert list(model.stream_reply(FRANCE, SAMPLING)) == ["Paris", " is", " the capital."]
    sent = server.requests[0]
    assert sent["messages"] == FRANCE and sent["stream"] is True and sent["model"] == "scripted"
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (64, 0.2, 0.9)


def test_a_stream_that_ends_with_a_finish_reason_and_no_done_is_complete(server: FakeModelServer) -> None:
    server.plan = [(["Paris."], "finish")]
    assert "".join(served(server.url).stream_reply(FRANCE, SAMPLING)) == "Paris."


def test_a_failure_before_any_text_is_tried_again_and_the_text_comes_once(server: FakeModelServer) -> None:
    server.plan = [([], "drop"), (["Paris."], "done")]
    assert "".join(served(server.url).stream_reply(FRANCE, SAMPLING)) == "Paris."
    assert len(server.requests) == 2


def test_a_server_that_breaks_off_mid_reply_is_not_asked_again_and_says_so(server: FakeModelServer) -> None:
    server.plan = [(["Paris", " is"], "break"), (["never"], "done")]
    got: list[str] = []
    with pytest.raises(EndpointError, match="broke off mid-reply"):
        got.extend(served(server.url).stream_reply(FRANCE, SAMPLING))
    assert got == ["Paris", " is"] and len(server.requests) == 1, "nothing is written twice"


def test_stop_ends_the_reply_at_the_next_piece(server: FakeModelServer) -> None:
    server.plan = [(["one", " two", " three", " four"], "done")]
    stop = threading.Event()
    stream = served(server.url).stream_reply(FRANCE, SAMPLING, ReplyGate(stop))
    assert next(stream) == "one"
    stop.set()
    assert list(stream) == []


def test_a_server_that_is_down_is_a_clear_message_at_start_and_in_a_reply() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelLoadError, match=f"Could not reach the model server at {url}"):
        served(url)
    model = EndpointModel(Settings(llm_endpoint=url, llm_endpoint_timeout=1))
    with pytest.raises(EndpointError, match="could not be reached") as failed:
        list(model.stream_reply(FRANCE, SAMPLING))
    assert "127.0.0.1" not in str(failed.value), "users never read the server's address"


def test_a_stopped_reply_is_not_asked_for_again(server: FakeModelServer) -> None:
    server.plan = [([], "drop"), (["Paris."], "done")]
    stop = threading.Event()
    stop.set()
    assert list(served(server.url).stream_reply(FRANCE, SAMPLING, ReplyGate(stop))) == []
    assert len(server.requests) == 1


def test_the_api_key_is_sent_and_never_shown() -> None:
    settings = Settings(llm_endpoint="http://127.0.0.1:9", llm_endpoint_key="sk-secret")
    assert EndpointModel(settings)._headers() == {"Authorization": "Bearer sk-secret"}
    assert "sk-secret" not in repr(settings)


@pytest.mark.slow
def test_a_spoken_reply_from_a_real_model_server_and_stop_mid_reply(
    transformers_serve: tuple[str, str], piper_voice, settings: Settings
) -> None:
    url, model_id = transformers_serve
    remote = Settings(llm_endpoint=url, llm_endpoint_model=model_id, seed=7, port=settings.port)
    model = EndpointModel(remote).load()
    pipeline = assemble(model, VoiceSet({"piper": piper_voice}, "piper"), remote).pipeline
    updates = list(pipeline.reply(FRANCE, threading.Event(), pipeline.options(model)))
    assert "Paris" in updates[-1].text
    assert any(update.audio is not None for update in updates), "spoken by the voice as it streams"
    stop = threading.Event()
    story = [{"role": "user", "content": "Tell me a long story about a robot who learns to paint."}]
    stream = model.stream_reply(story, Sampling(0.2, 0.9, 1.15, 300), ReplyGate(stop))
    heard = [next(stream), next(stream), next(stream)]
    stop.set()
    heard += list(stream)
    assert len(heard) <= 4, "at most the piece already on its way"
    assert "Paris" in "".join(model.stream_reply(FRANCE, SAMPLING)), "the server goes on serving"
