"""A stranger with the public link sends anything: each case gets a clear answer and the app keeps serving.

Through the real Gradio server (gradio_client and raw HTTP), on a scripted model, so the
cases are fast and in a fixed order. Each test states what the client gets back, checks
how the server counted it (``/metrics``), and ends by checking that the app still answers
an ordinary message from someone else. The wording of each refusal is tested on the handler
(test_chat_handler.py); here, that it is refused and nothing breaks.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from prometheus_client.parser import text_string_to_metric_families

from speakstream.text.conversation import content_text

from fakes import ScriptedServer, hold_until, scripted_server
from support import chat, chat_client, generation_threads, wait_until

pytestmark = pytest.mark.slow

ANSWER = "Hello! Nice to meet you. How can I help today?"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server(ANSWER, allow_custom_models=True, rate_limit=50, queue_size=4, concurrency_limit=1) as running:
        yield running


def client(server: ScriptedServer, address: str = "10.0.0.1") -> Client:
    return chat_client(server.url, address)


def submit(server: ScriptedServer, message: object, history: object = (), address: str = "10.0.0.1", **choices):
    """A text-only /chat call from ``address``; returns the job."""
    history = list(history) if isinstance(history, tuple) else history
    return chat(client(server, address), message, history=history, voice="silent", text_only=True, **choices)


def final_chat(job) -> list[dict]:
    return job.result()[1]


def counted(server: ScriptedServer) -> dict[str, float]:
    """The server's metrics, flattened: ``name{label=value}`` -> value."""
    text = httpx.get(server.url + "metrics", timeout=30).text
    return {
        sample.name + "".join(f"{{{k}={v}}}" for k, v in sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def refusals(server: ScriptedServer, reason: str) -> float:
    return counted(server)[f"speakstream_refusals_total{{reason={reason}}}"]


def still_serving(server: ScriptedServer) -> None:
    chat = final_chat(submit(server, "Hi!", address="10.9.9.9"))
    assert content_text(chat[-1]["content"]) == ANSWER


def test_a_huge_message_is_refused_and_never_reaches_the_model(server: ScriptedServer) -> None:
    assert final_chat(submit(server, "x" * 1_000_000)) == []
    assert server.model.prompts == [] and refusals(server, "too_long") == 1
    still_serving(server)


def test_a_huge_history_is_cut_to_the_newest_turns_and_answered(server: ScriptedServer) -> None:
    turn = [{"type": "text", "text": "blah " * 40}]
    history = [{"role": ("user", "assistant")[i % 2], "content": turn} for i in range(5000)]
    chat = final_chat(submit(server, "And now?", history))
    settings = server.app.settings
    assert len(server.model.prompts[-1]) <= settings.max_history_turns + 1
    assert sum(len(m["content"]) for m in server.model.prompts[-1][:-1]) <= settings.max_history_chars
    assert content_text(chat[-1]["content"]) == ANSWER and len(chat) <= settings.max_history_turns + 2
    still_serving(server)


@pytest.mark.parametrize(
    "history",
    [
        [{"role": "user", "content": "a plain string where Gradio expects text blocks"}],
        [{"role": "user", "content": [{"type": "text", "text": 42}]}],
        [{"content": [{"type": "text", "text": "no role"}]}],
        "not a list",
        [[["nested"]]],
    ],
)
def test_a_malformed_history_is_refused_by_gradio_and_nothing_breaks(server: ScriptedServer, history: object) -> None:
    """Gradio checks the chat's shape before any of the app's code runs: the caller gets its error."""
    with pytest.raises(AppError):
        submit(server, "Hi", history).result()
    assert server.model.prompts == []
    still_serving(server)


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"data": ["Hi"], "fn_index": 99999, "session_hash": "x"}',
        b'{"data": "x", "event_data": null}',
        b"[" * 10_000,
        b'{"data": [' + b'"x",' * 100_000 + b'"x"], "fn_index": 0, "session_hash": "y"}',
    ],
)
def test_garbage_on_the_wire_is_answered_with_an_error_status(server: ScriptedServer, body: bytes) -> None:
    """Gradio answers 4xx, a bare 500 for an unknown function number (its own KeyError, logged), or
    takes the request and then refuses its data: no details leak, and nothing else is affected."""
    answer = httpx.post(
        server.url + "gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert 400 <= answer.status_code < 600 or set(answer.json()) == {"event_id"}, answer.text[:200]
    assert "Traceback" not in answer.text and "/speakstream/" not in answer.text
    assert server.model.prompts == []
    still_serving(server)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("/etc", "path"),
        ("../../models", "path"),
        ("speakstream/..", "path"),
        ("a" * 10_000 + "/b", "path"),
        ("nobody-here/no-such-model-at-all", "hub id"),
    ],
)
def test_a_model_that_is_a_path_huge_or_missing_is_refused_and_never_loaded(
    server: ScriptedServer, model: str, kind: str
) -> None:
    """(What each refusal says is tested on the handlers: tests/test_model_pool.py.)"""
    assert final_chat(submit(server, "Hi", model=model)) == []
    if kind == "hub id":  # its load starts, fails offline, and is refused from then on
        assert wait_until(
            lambda: final_chat(submit(server, "Hi", model=model)) == [] and refusals(server, "model_refused")
        )
    assert server.model.prompts == [] and server.app.models.loaded == [server.app.settings.llm]
    assert refusals(server, "model_refused") + refusals(server, "model_loading") >= 1
    still_serving(server)


def test_an_over_long_system_prompt_is_refused_with_a_message(server: ScriptedServer) -> None:
    assert final_chat(submit(server, "Hi", system_prompt="be nice " * 500)) == []
    assert refusals(server, "too_long") == 1
    still_serving(server)


def test_a_flood_from_one_client_is_rate_limited_and_others_are_served(server: ScriptedServer) -> None:
    for _ in range(50):
        final_chat(submit(server, "Hi", address="10.6.6.6"))
    assert final_chat(submit(server, "Hi", address="10.6.6.6")) == []
    assert refusals(server, "rate_limit") == 1
    still_serving(server)


def test_a_flood_from_many_clients_fills_the_queue_and_the_rest_are_told_so(server: ScriptedServer) -> None:
    server.model.before_token = hold_until(server.events, 0, "flood sent")
    first = submit(server, "Hi", address="10.1.0.0")
    assert wait_until(lambda: server.model.prompts)  # the one place for a reply is taken

    def send(index: int) -> str:
        try:
            final_chat(submit(server, "Hi", address=f"10.1.0.{index}"))
        except QueueError:
            return "queue full"
        return "served"

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        waiting = [pool.submit(send, index) for index in range(1, 9)]
        assert wait_until(lambda: sum(job.done() for job in waiting) >= 4), "those beyond the queue are told at once"
        server.events.add("flood sent")
        outcomes = [job.result(timeout=60) for job in waiting]
    assert outcomes.count("queue full") >= 4 and outcomes.count("served") >= 1
    assert content_text(final_chat(first)[-1]["content"]) == ANSWER
    still_serving(server)


def test_a_client_that_disconnects_mid_reply_stops_it_and_frees_its_threads(server: ScriptedServer) -> None:
    server.model.before_token = hold_until(server.events, 3, "gone")
    job = submit(server, "Tell me a story")
    assert wait_until(lambda: "token 2" in server.events.items)
    job.cancel()  # the reply is stuck at token 3: it is stopped anyway
    assert wait_until(lambda: counted(server)["speakstream_replies_ended_total{outcome=stopped}"] == 1)
    server.events.add("gone")  # the model is let go only once the server knows the client left
    server.events.wait_for("stopped")
    assert wait_until(lambda: not generation_threads())
    server.model.before_token = None
    still_serving(server)


def test_many_new_sessions_cannot_grow_what_the_server_keeps_beyond_its_bound() -> None:
    with scripted_server(ANSWER, max_sessions=3, rate_limit=0, allow_custom_models=True) as bounded:
        for visitor in range(6):
            assert final_chat(submit(bounded, "Hi!", address=f"10.0.1.{visitor}"))
        assert counted(bounded)["speakstream_sessions"] == 3, "the least recently used sessions are forgotten"
        assert final_chat(submit(bounded, "Still there?")), "and new ones are still answered"


def test_the_metrics_count_and_never_show_what_was_said(server: ScriptedServer) -> None:
    final_chat(submit(server, "My secret word is pineapple"))
    text = httpx.get(server.url + "metrics", timeout=30).text
    assert "pineapple" not in text and ANSWER not in text
    metrics = counted(server)
    assert metrics["speakstream_replies_started_total"] == 1
    assert metrics["speakstream_replies_ended_total{outcome=completed}"] == 1
    assert metrics["speakstream_tokens_per_second_count"] == 1 and metrics["speakstream_models_loaded"] == 1
    assert metrics["speakstream_voices_waiting_for_a_core"] == 0, "nothing speaks now"
