"""The language model on another server: any OpenAI-compatible ``/v1/chat/completions`` (``--llm-endpoint``).

vLLM, TGI, llama.cpp's server, Ollama and ``transformers serve`` all speak it. A reply streams
from the server (``stream: true``) into the same chunker and voice as a local model's. Stop
closes the connection (servers stop generating when the client goes). A failed connection
is retried only while nothing of the reply has arrived, so text is never written twice; a
server that is down, slow to answer or breaks off mid-reply ends the reply with a clear
message. The server's own tokenizer is not known here, so prompt lengths are estimated from
their characters (generously, so trimming errs on the short side).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from speakstream.llm.model import Message, ReplyGate, Sampling
from speakstream.llm.sources import ModelLoadError, ModelSource, model_label
from speakstream.settings import Settings

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.0  # fewer than most tokenizers average, so estimates run long
TOKENS_PER_MESSAGE = 8  # the chat template's markers around each message
RETRIES = 2
RETRY_PAUSE_SECONDS = 0.5


class EndpointError(RuntimeError):
    """The model server could not give a reply; the message says what happened."""


class _Unfinished(EndpointError):
    """The stream ended before the server said the reply was complete."""


class EndpointModel:
    """A chat model served elsewhere, used like a loaded :class:`~speakstream.llm.model.LanguageModel`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The server's own address: "http://host:8000" or, as OpenAI clients write it, ".../v1".
        self.url = settings.llm_endpoint.rstrip("/").removesuffix("/v1")
        self.model_id = settings.llm_endpoint_model or settings.llm
        self.context_length = settings.llm_endpoint_context
        self.source: ModelSource | None = None
        self.weights = "served"

    @property
    def name(self) -> str:
        return model_label(self.model_id)

    def _headers(self) -> dict[str, str]:
        key = self.settings.llm_endpoint_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def load(self) -> EndpointModel:
        """Check that the server answers and serves the model; :class:`ModelLoadError` saying why not."""
        import httpx

        try:
            answer = httpx.get(f"{self.url}/v1/models", headers=self._headers(), timeout=self._timeout())
            answer.raise_for_status()
            served = [entry.get("id") for entry in answer.json().get("data", [])]
        except (httpx.HTTPError, ValueError) as error:
            raise ModelLoadError(
                f"Could not reach the model server at {self.url} ({error.__class__.__name__}: {error}). "
                "Is it running, and is --llm-endpoint its address?"
            ) from error
        if served and self.model_id not in served:
            log.warning("The server lists %s, not %s; asking for it anyway", ", ".join(map(str, served)), self.model_id)
        # The page shows this: the model, never the server's address.
        self.source = ModelSource(Path("."), None, f"a model server ({self.model_id})")
        log.info("Language model served by %s (%s)", self.url, self.model_id)
        return self

    def _timeout(self) -> Any:
        import httpx

        return httpx.Timeout(self.settings.llm_endpoint_timeout, connect=min(5.0, self.settings.llm_endpoint_timeout))

    def text_tokens(self, text: str) -> int:
        return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(self.text_tokens(message["content"]) + TOKENS_PER_MESSAGE for message in messages)

    def stream_reply(
        self, messages: Sequence[Message], sampling: Sampling, gate: ReplyGate | None = None
    ) -> Iterator[str]:
        """Yield the reply's text as the server streams it; the gate's ``stop`` ends it at the next
        piece (its pause and cores are for models here: the server's CPU is not ours to share)."""
        import httpx

        stop = (gate or ReplyGate()).stop

        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": list(messages),
            "stream": True,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        wrote = False
        for attempt in range(RETRIES + 1):
            try:
                with (
                    httpx.Client(timeout=self._timeout(), headers=self._headers()) as client,
                    client.stream("POST", f"{self.url}/v1/chat/completions", json=body) as answer,
                ):
                    if answer.status_code >= 400:
                        answer.read()
                        log.warning("Model server %s answered HTTP %d: %s", self.url, answer.status_code, answer.text)
                        raise EndpointError(f"The model server refused the request (HTTP {answer.status_code}).")
                    for piece in _pieces(answer.iter_lines()):
                        if stop.is_set():
                            return  # leaving closes the connection: the server stops too
                        wrote = True
                        yield piece
                return
            except httpx.TimeoutException as error:
                failure: Exception = error
                reason = f"did not answer within {self.settings.llm_endpoint_timeout:g} s"
            except httpx.HTTPError as error:
                failure, reason = error, f"could not be reached ({error.__class__.__name__})"
            except _Unfinished as error:
                failure, reason = error, "ended the stream before the reply was complete"
            # What users read never names the server's address; the log does.
            log.warning("Model server %s %s (%s)", self.url, reason, failure)
            if wrote:  # a retry would write the reply's start again
                raise EndpointError(f"The model server broke off mid-reply: it {reason}.") from failure
            if stop.is_set() or (attempt < RETRIES and stop.wait(RETRY_PAUSE_SECONDS * (attempt + 1))):
                return  # stopped: nothing more to ask for
        raise EndpointError(f"The model server {reason}.") from failure


def _pieces(lines: Iterator[str]) -> Iterator[str]:
    """The text of each server-sent chunk (``data: {...}`` lines), until ``data: [DONE]`` (or the
    stream's end after a chunk that gave its ``finish_reason``, as some servers do)."""
    finished = False
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            choice = (json.loads(data).get("choices") or [{}])[0]
        except json.JSONDecodeError as error:
            raise EndpointError(f"The model server sent something that is not JSON: {data[:100]!r}") from error
        text = (choice.get("delta") or {}).get("content")
        if text:
            yield text
        finished = finished or bool(choice.get("finish_reason"))
    if not finished:
        raise _Unfinished("neither [DONE] nor a finish_reason")
