"""Generator backends: extractive answers, loading errors, stopping, and the OpenAI-compatible client.

Unit tests use fakes (a fake llama.cpp model, a fake transformers model, a fake SSE server on loopback);
integration tests run the real 0.5B GGUF through llama.cpp, transformers and llama.cpp's OpenAI-compatible
server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag import generate
from rag.errors import BackendError
from rag.generate import (
    ExtractiveGenerator,
    GenerationRequest,
    LlamaCppGenerator,
    TransformersGenerator,
    cached_model,
    cut_at_stop,
    load_generator,
    resolve_backend,
)
from rag.prompts import DECLINE_TEXT
from rag.settings import Settings
from rag.types import Source

MESSAGES = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "Say hello."},
]


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Isolated settings; overrides conftest's so these tests skip building the tiny embedder."""
    return Settings(data_dir=tmp_path / "data", backend="extractive")


def numbered_sources(papers) -> list[Source]:
    """Sources numbered 3, 4, ... so a test notices when a backend cites list positions instead of numbers."""
    return [Source(number=index + 3, paper=paper, score=1.0) for index, paper in enumerate(papers)]


# --- extractive ---------------------------------------------------------------------------------------------


def test_extractive_answers_with_matching_sentence_and_its_source_number(settings, papers):
    sources = numbered_sources(papers)
    vilt = next(source for source in sources if source.paper.id == "vilt")
    request = GenerationRequest(messages=[], sources=sources, question="How much faster is ViLT than VLP models?")

    text = "".join(ExtractiveGenerator(settings).stream(request))

    first = text.split(" [")[0]
    assert first == "ViLT is up to tens of times faster than previous VLP models"
    assert text.startswith(f"{first} [{vilt.number}].")


def test_extractive_cites_every_sentence_and_only_given_numbers(settings, papers):
    sources = numbered_sources(papers)
    request = GenerationRequest(messages=[], sources=sources, question="deep networks gradient noise training")

    pieces = list(ExtractiveGenerator(settings).stream(request))

    assert 1 < len(pieces) <= settings.generation.extractive_sentences  # one piece per sentence, so the UI streams
    valid = {source.number for source in sources}
    for piece in pieces:
        number = int(piece.rstrip(".").rsplit("[", 1)[1].rstrip("]"))
        assert number in valid
    assert "gradient" in pieces[0].lower()


def test_extractive_declines_with_the_answer_stage_text(settings, papers):
    request = GenerationRequest(
        messages=[], sources=numbered_sources(papers), question="What is the capital of France?"
    )
    assert list(ExtractiveGenerator(settings).stream(request)) == [DECLINE_TEXT]


def test_extractive_declines_without_sources(settings):
    request = GenerationRequest(messages=[], sources=[], question="What is ViLT?")
    assert list(ExtractiveGenerator(settings).stream(request)) == [DECLINE_TEXT]


def test_extractive_sentence_count_follows_settings(settings, papers):
    one = settings.with_changes(extractive_sentences=1)
    request = GenerationRequest(messages=[], sources=numbered_sources(papers), question="deep networks")
    assert len(list(ExtractiveGenerator(one).stream(request))) == 1


def test_extractive_stream_stops_when_closed(settings, papers):
    request = GenerationRequest(messages=[], sources=numbered_sources(papers), question="deep networks")
    stream = ExtractiveGenerator(settings).stream(request)
    next(stream)
    stream.close()
    assert list(stream) == []


# --- stop strings -------------------------------------------------------------------------------------------


def test_cut_at_stop_catches_a_stop_string_split_over_pieces():
    assert "".join(cut_at_stop(["The answer", " is 4.<|im", "_end|> junk"], ["<|im_end|>"])) == "The answer is 4."


def test_cut_at_stop_passes_everything_without_stops():
    assert list(cut_at_stop(["a", "b"], [])) == ["a", "b"]
    assert "".join(cut_at_stop(["abc", "def"], ["zz"])) == "abcdef"


def test_cut_at_stop_stops_consuming_its_input():
    consumed = []

    def pieces() -> Iterator[str]:
        for piece in ["one ", "two ", "STOP", " three", " four"]:
            consumed.append(piece)
            yield piece

    assert "".join(cut_at_stop(pieces(), ["STOP"])) == "one two "
    assert consumed == ["one ", "two ", "STOP"]


# --- loading ------------------------------------------------------------------------------------------------


def test_unknown_backend_is_a_one_line_backend_error(settings):
    generation = settings.generation.model_copy(update={"backend": "gpt-7"})  # unvalidated: Settings refuses it
    bad = settings.model_copy(update={"generation": generation})
    with pytest.raises(BackendError, match="Unknown generator backend 'gpt-7'") as caught:
        load_generator(bad)
    assert "\n" not in str(caught.value)


def test_openai_without_base_url_is_a_backend_error(settings):
    with pytest.raises(BackendError, match="RAG_OPENAI_BASE_URL"):
        load_generator(settings.with_changes(backend="openai", openai_base_url=None))


@pytest.mark.parametrize("backend", ["llama_cpp", "transformers"])
def test_missing_model_file_is_a_backend_error(settings, tmp_path, backend, monkeypatch):
    monkeypatch.setattr(generate, "llama_cpp_available", lambda: True)  # reach the model-file check
    missing = settings.with_changes(backend=backend, model_path=tmp_path / "nope.gguf")
    with pytest.raises(BackendError, match=r"Model file not found: .*nope\.gguf"):
        load_generator(missing)


def test_llama_cpp_missing_package_is_a_backend_error(settings, monkeypatch):
    monkeypatch.setattr(generate, "llama_cpp_available", lambda: False)
    with pytest.raises(BackendError, match=r"llama-cpp-python.*RAG_BACKEND=transformers"):
        load_generator(settings.with_changes(backend="llama_cpp"))


def test_auto_prefers_llama_cpp_and_falls_back_to_transformers(monkeypatch):
    monkeypatch.setattr(generate, "llama_cpp_available", lambda: True)
    assert resolve_backend("auto") == "llama_cpp"
    monkeypatch.setattr(generate, "llama_cpp_available", lambda: False)
    assert resolve_backend("auto") == "transformers"
    assert resolve_backend("extractive") == "extractive"


def test_extractive_and_openai_load_by_name(settings):
    assert load_generator(settings).name == "extractive"
    remote = settings.with_changes(backend="openai", openai_base_url="http://127.0.0.1:9/v1/")
    generator = load_generator(remote)
    assert generator.name == "openai"
    assert generator.url == "http://127.0.0.1:9/v1/chat/completions"


def test_models_are_loaded_once_per_backend_and_path(tmp_path):
    loads = []

    def load():
        loads.append(1)
        return object()

    path = tmp_path / "model.gguf"
    first = cached_model("test-backend", path, load)
    assert cached_model("test-backend", tmp_path / "." / "model.gguf", load) is first
    assert len(loads) == 1
    other = cached_model("test-backend", tmp_path / "other.gguf", load)
    assert other is not first and len(loads) == 2
    bigger_context = cached_model("test-backend", path, load, options=(8192,))
    assert bigger_context is not first and len(loads) == 3


# --- stopping, with fake models -----------------------------------------------------------------------------


class FakeLlama:
    """Quacks like llama_cpp.Llama: a streamed chat completion that records how far it got."""

    def __init__(self):
        self.produced = 0
        self.closed = False
        self.calls = []

    def create_chat_completion(self, **kwargs):
        self.calls.append(kwargs)

        def chunks():
            try:
                yield {"choices": [{"delta": {"role": "assistant"}}]}
                for index in range(kwargs["max_tokens"]):
                    self.produced += 1
                    yield {"choices": [{"delta": {"content": f"t{index} "}}]}
            finally:
                self.closed = True

        return chunks()


def test_llama_cpp_stream_passes_request_and_stops_when_closed(settings):
    llm = FakeLlama()
    generator = LlamaCppGenerator(llm, settings)
    stream = generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=1000, stop=["\n\n"]))

    assert [next(stream), next(stream)] == ["t0 ", "t1 "]
    stream.close()

    assert llm.closed
    assert llm.produced == 2
    call = llm.calls[0]
    assert call["messages"] == MESSAGES and call["stream"] is True and call["stop"] == ["\n\n"]
    assert call["temperature"] == settings.generation.temperature
    # the model lock was released, so the next question can run
    assert "".join(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=3))) == "t0 t1 t2 "


def test_a_stream_left_open_makes_the_next_one_fail_clearly_not_hang(settings):
    generator = LlamaCppGenerator(FakeLlama(), settings.with_changes(request_timeout_s=0.2))
    abandoned = generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=100))
    next(abandoned)  # holds the model, like a consumer that neither finishes nor closes
    with pytest.raises(BackendError, match="still busy"):
        list(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=3)))
    abandoned.close()
    assert len(list(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=3)))) == 3


def test_llama_cpp_prompt_too_long_is_a_backend_error(settings):
    class TooLong:
        def create_chat_completion(self, **kwargs):
            def chunks():  # like llama.cpp: the check runs when the stream is first read
                raise ValueError("Requested tokens (5000) exceed context window of 4096")
                yield

            return chunks()

    with pytest.raises(BackendError, match="exceed context window"):
        list(LlamaCppGenerator(TooLong(), settings).stream(GenerationRequest(messages=MESSAGES)))


class FakeTokenizer:
    """Just enough of a tokenizer for TextIteratorStreamer: token i decodes to 'w<i> '."""

    pad_token_id = 0
    eos_token_id = 0

    def apply_chat_template(self, messages, **kwargs):
        import torch

        return {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}

    def decode(self, ids, **kwargs):
        return "".join(f"w{int(token)} " for token in ids)


class FakeCausalLM:
    """One token a millisecond, honouring the streamer and the stopping criteria as HF's generate does."""

    def __init__(self, fail: bool = False):
        self.steps = 0
        self.fail = fail

    def generate(self, input_ids, streamer, stopping_criteria, max_new_tokens, **kwargs):
        import torch

        if self.fail:
            raise RuntimeError("out of memory\nlong traceback text")
        streamer.put(input_ids)  # the prompt, which the streamer skips
        ids = input_ids
        for step in range(max_new_tokens):
            token = torch.tensor([[10 + step]])
            ids = torch.cat([ids, token], dim=1)
            self.steps += 1
            streamer.put(token[0])
            if stopping_criteria(ids, None).all():
                break
            time.sleep(0.001)
        streamer.end()


def test_transformers_stream_yields_text_and_stops_generation_when_closed(settings):
    model = FakeCausalLM()
    generator = TransformersGenerator(model, FakeTokenizer(), settings)
    stream = generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=2000))

    assert next(stream).startswith("w10")
    stream.close()  # joins the worker thread, so the step count below is final

    assert model.steps < 200  # stopped within a few tokens, not after all 2000
    assert "".join(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=3))) == "w10 w11 w12 "


def test_transformers_stop_string_ends_generation(settings):
    model = FakeCausalLM()
    generator = TransformersGenerator(model, FakeTokenizer(), settings)
    text = "".join(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=2000, stop=["w13"])))
    assert text == "w10 w11 w12 "
    assert model.steps < 200


def test_transformers_generation_failure_is_a_one_line_backend_error(settings):
    generator = TransformersGenerator(FakeCausalLM(fail=True), FakeTokenizer(), settings)
    with pytest.raises(BackendError, match=r"out of memory$"):
        list(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=5)))


def test_transformers_prompt_over_context_window_is_a_backend_error(settings):
    generator = TransformersGenerator(FakeCausalLM(), FakeTokenizer(), settings)
    with pytest.raises(BackendError, match="exceeds the context window"):
        list(generator.stream(GenerationRequest(messages=MESSAGES, max_tokens=settings.generation.context_window)))


# --- OpenAI-compatible client against a fake SSE server -----------------------------------------------------


class FakeOpenAIServer:
    """A loopback HTTP server streaming chat-completion chunks as server-sent events, as OpenAI servers do."""

    def __init__(self, pieces=("Hel", "lo", " world"), status=200, delay=0.0, error_event=None):
        self.pieces = list(pieces)
        self.status = status
        self.delay = delay
        self.error_event = error_event
        self.requests: list[dict] = []
        self.client_left = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers["Authorization"]})
                if server.status != 200:
                    self.send_response(server.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "model not loaded"}}\n')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    self.send_event({"choices": [{"delta": {"role": "assistant"}, "index": 0}]})
                    self.wfile.write(b": keep-alive comment\n\n")
                    if server.error_event:
                        self.send_event({"error": server.error_event})
                    for piece in server.pieces:
                        time.sleep(server.delay)
                        self.send_event({"choices": [{"delta": {"content": piece}, "index": 0}]})
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    server.client_left.set()

            def send_event(self, event):
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def openai_settings(settings, url, **update) -> Settings:
    return settings.with_changes(**{"backend": "openai", "openai_base_url": url, "openai_api_key": "sk-test", **update})


def test_openai_streams_deltas_and_sends_the_request(settings):
    with FakeOpenAIServer() as server:
        generator = load_generator(openai_settings(settings, server.url + "/", openai_model="qwen"))
        request = GenerationRequest(messages=MESSAGES, max_tokens=12, stop=["\n\n"])
        pieces = list(generator.stream(request))

    assert pieces == ["Hel", "lo", " world"]
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-test"
    assert sent["body"] == {
        "model": "qwen",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 12,
        "temperature": settings.generation.temperature,
        "stop": ["\n\n"],
    }


def test_openai_http_error_names_the_url_and_status(settings):
    with FakeOpenAIServer(status=503) as server:
        generator = load_generator(openai_settings(settings, server.url))
        with pytest.raises(BackendError) as caught:
            list(generator.stream(GenerationRequest(messages=MESSAGES)))
    message = str(caught.value)
    assert f"{server.url}/chat/completions answered HTTP 503" in message
    assert "model not loaded" in message and "\n" not in message


def test_openai_error_event_is_a_backend_error(settings):
    with FakeOpenAIServer(error_event={"message": "context length exceeded"}) as server:
        generator = load_generator(openai_settings(settings, server.url))
        with pytest.raises(BackendError, match="reported an error: context length exceeded"):
            list(generator.stream(GenerationRequest(messages=MESSAGES)))


def test_openai_unreachable_server_is_a_one_line_backend_error(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket closes
    url = f"http://127.0.0.1:{port}/v1"
    generator = load_generator(openai_settings(settings, url))
    with pytest.raises(BackendError, match=f"Cannot reach the server at {url}/chat/completions") as caught:
        list(generator.stream(GenerationRequest(messages=MESSAGES)))
    assert "\n" not in str(caught.value)


def test_openai_slow_server_times_out_with_backend_error(settings):
    with FakeOpenAIServer(delay=2.0) as server:
        generator = load_generator(openai_settings(settings, server.url, request_timeout_s=0.3))
        with pytest.raises(BackendError, match=r"did not answer within 0\.3 s"):
            list(generator.stream(GenerationRequest(messages=MESSAGES)))


def test_openai_closing_the_stream_disconnects_from_the_server(settings):
    with FakeOpenAIServer(pieces=["x"] * 400, delay=0.01) as server:
        generator = load_generator(openai_settings(settings, server.url))
        stream = generator.stream(GenerationRequest(messages=MESSAGES))
        assert next(stream) == "x"
        stream.close()
        assert server.client_left.wait(10), "the server kept streaming to a client that had gone"


# --- integration: the real 0.5B model -----------------------------------------------------------------------

needs_llama_cpp = pytest.mark.skipif(
    not generate.llama_cpp_available(), reason="llama-cpp-python is not installed (pip install '.[llama]')"
)
SHORT = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is the capital of France? Answer with one word."},
]


@pytest.fixture
def small_model_settings() -> Settings:
    """The real bundled 0.5B model, assembled under the user's data dir by scripts/setup.sh."""
    return Settings(model_size="0.5b", context_window=1024)


@pytest.mark.integration
@needs_llama_cpp
def test_llama_cpp_answers_a_short_prompt(small_model_settings):
    generator = load_generator(small_model_settings.with_changes(backend="llama_cpp"))
    assert generator.name == "llama_cpp"
    text = "".join(generator.stream(GenerationRequest(messages=SHORT, max_tokens=8)))
    assert "paris" in text.lower()
    # the model is cached: a second load returns the same llama.cpp object, not a reload
    again = load_generator(small_model_settings.with_changes(backend="llama_cpp"))
    assert again.llm is generator.llm


@pytest.mark.integration
def test_transformers_answers_a_short_prompt(small_model_settings):
    generator = load_generator(small_model_settings.with_changes(backend="transformers"))
    text = "".join(generator.stream(GenerationRequest(messages=SHORT, max_tokens=8)))
    assert "paris" in text.lower()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def llama_server(small_model_settings, tmp_path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port, serving the 0.5B model.

    Its log goes to a file, not a pipe: llama.cpp logs more than a pipe buffer holds while loading, and a
    full pipe nobody reads would block the server before it ever listens.
    """
    from rag.models import generator_model_path

    model = generator_model_path(small_model_settings)
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "1024", "--model_alias", "qwen-0.5b", "--verbose", "False"]
    log = tmp_path / "llama_server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    pytest.fail(f"llama_cpp.server did not listen on port {port} within {timeout} s: {log.read_text()[-2000:]}")


@pytest.mark.integration
@needs_llama_cpp
def test_openai_backend_against_real_llama_cpp_server(small_model_settings, llama_server):
    remote = small_model_settings.with_changes(backend="openai", openai_base_url=llama_server, openai_model="qwen-0.5b")
    generator = load_generator(remote)
    pieces = list(generator.stream(GenerationRequest(messages=SHORT, max_tokens=8)))
    assert len(pieces) >= 1
    assert "paris" in "".join(pieces).lower()
