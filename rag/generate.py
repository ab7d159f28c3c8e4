"""Generator backends behind one interface: llama.cpp, transformers, OpenAI-compatible servers, extractive.

INTERFACE (fixed; the generation engineer fills in the backends):
    request = GenerationRequest(messages=[{"role": "system", ...}, {"role": "user", ...}], sources=[...],
                                question="...", max_tokens=220, stop=[...])
    generator = load_generator(settings)
    for piece in generator.stream(request):   # text pieces as they are produced
        ...

Every `stream()` is a Python generator, so a consumer that stops iterating (the UI's stop button, an abandoned
HTTP response) calls `close()` on it; each backend turns that into a real stop of the computation instead of
letting the model run on in the background. Loaded models are cached per (backend, model file) in the process,
so a second `Bot` does not pay the load (seconds, and 1-7 GB of memory) again.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from rag.errors import BackendError
from rag.settings import Settings
from rag.text import key_terms, split_prose
from rag.types import Source


@dataclass
class GenerationRequest:
    """Everything a backend may need. LLM backends use `messages`; the extractive backend uses the rest."""

    messages: list[dict[str, str]]
    sources: list[Source] = field(default_factory=list)
    question: str = ""
    max_tokens: int = 220
    stop: list[str] = field(default_factory=list)


class Generator(Protocol):
    """A text generator. `stream` yields pieces of text; joining them gives the full completion."""

    name: str

    def stream(self, request: GenerationRequest) -> Iterator[str]: ...


# --- loading ------------------------------------------------------------------------------------------------

_MODEL_CACHE: dict[tuple, Any] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def load_generator(settings: Settings) -> Generator:
    """The backend named by `settings.generation.backend` ('auto': llama_cpp if importable, else transformers)."""
    backend = resolve_backend(settings.generation.backend)
    if backend == "extractive":
        return ExtractiveGenerator(settings)
    if backend == "openai":
        return OpenAIGenerator(settings)
    if backend == "llama_cpp":
        return LlamaCppGenerator.from_settings(settings)
    if backend == "transformers":
        return TransformersGenerator.from_settings(settings)
    raise BackendError(
        f"Unknown generator backend {backend!r}: use auto, llama_cpp, transformers, openai or extractive."
    )


def resolve_backend(name: str) -> str:
    """'auto' becomes the best local backend installed; other names pass through unchanged."""
    if name != "auto":
        return name
    return "llama_cpp" if llama_cpp_available() else "transformers"


def llama_cpp_available() -> bool:
    """True when llama-cpp-python is installed (checked without importing: the import loads a C library)."""
    return importlib.util.find_spec("llama_cpp") is not None


def cached_model(backend: str, path: Path, load: Callable[[], Any], options: tuple = ()) -> Any:
    """The model for (backend, path, load options), loaded by `load` on first use and shared afterwards.

    The lock is held while loading so two Bots started together load the weights once, not twice.
    """
    key = (backend, str(Path(path).resolve()), *options)
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load()
        return _MODEL_CACHE[key]


def clear_model_cache() -> None:
    """Forget every loaded model (their memory is freed once no generator holds them)."""
    with _MODEL_CACHE_LOCK:
        _MODEL_CACHE.clear()


@atexit.register
def _close_models_at_exit() -> None:
    """Free llama.cpp models while the interpreter is intact; at teardown its finaliser prints a traceback."""
    with _MODEL_CACHE_LOCK:
        for entry in _MODEL_CACHE.values():
            model = entry[0] if isinstance(entry, tuple) else entry
            close = getattr(model, "close", None)
            if callable(close):
                close()
        _MODEL_CACHE.clear()


@contextmanager
def exclusive(lock: threading.Lock, timeout_s: float) -> Iterator[None]:
    """Hold a model's lock, or fail after `timeout_s` instead of hanging behind a stream nobody closed."""
    if not lock.acquire(timeout=timeout_s):
        raise BackendError(f"The model is still busy with another answer after {timeout_s:g} s; try again.")
    try:
        yield
    finally:
        lock.release()


def _model_path(settings: Settings) -> Path:
    from rag.models import generator_model_path

    return generator_model_path(settings)


def _n_threads(settings: Settings) -> int:
    return settings.generation.n_threads or os.cpu_count() or 1


# --- llama.cpp ----------------------------------------------------------------------------------------------


class LlamaCppGenerator:
    """A GGUF model run in-process by llama.cpp; the chat template is the one stored in the GGUF.

    One `Llama` object cannot run two generations at once, so `stream` holds a lock shared by every generator
    built on the same cached model.
    """

    name = "llama_cpp"

    def __init__(self, llm: Any, settings: Settings, model: str = "", lock: threading.Lock | None = None):
        self.llm = llm
        self.settings = settings
        self.model = model
        self._lock = lock or threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppGenerator:
        if not llama_cpp_available():
            raise BackendError(
                "The llama_cpp backend needs llama-cpp-python: pip install '.[llama]', or set RAG_BACKEND=transformers."
            )
        path = _model_path(settings)
        options = (settings.generation.context_window, _n_threads(settings))
        llm, lock = cached_model("llama_cpp", path, lambda: (load_llama(path, settings), threading.Lock()), options)
        return cls(llm, settings, model=path.name, lock=lock)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        with exclusive(self._lock, self.settings.generation.request_timeout_s):
            chunks = self.llm.create_chat_completion(
                messages=request.messages,
                stream=True,
                max_tokens=request.max_tokens,
                temperature=self.settings.generation.temperature,
                stop=request.stop or None,
            )
            try:
                for chunk in chunks:
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            except ValueError as error:  # llama.cpp reports an over-long prompt so, at the first token
                raise BackendError(f"llama.cpp refused the prompt: {_first_line(error)}") from error
            finally:
                # Closing llama.cpp's own generator ends its token loop now, not at garbage collection.
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()


def load_llama(path: Path, settings: Settings) -> Any:
    """A llama.cpp model for `path`, uncached (`LlamaCppGenerator.from_settings` caches it)."""
    from llama_cpp import Llama

    try:
        return Llama(
            model_path=str(path),
            n_ctx=settings.generation.context_window,
            n_threads=_n_threads(settings),
            verbose=False,
        )
    except (ValueError, RuntimeError) as error:
        raise BackendError(f"llama.cpp could not load {path}: {_first_line(error)}") from error


# --- transformers -------------------------------------------------------------------------------------------


class TransformersGenerator:
    """The same GGUF, dequantised to float32 and run by transformers: slow, but needs only torch.

    `generate` runs in a worker thread that feeds a `TextIteratorStreamer`; a stopping criterion watches an
    event that `stream` sets when its consumer goes away, so the worker ends at the next token.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: Settings,
        name: str = "",
        lock: threading.Lock | None = None,
    ):
        self.hf_model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.model = name
        self._lock = lock or threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersGenerator:
        path = _model_path(settings)
        loaded = cached_model("transformers", path, partial(load_transformers, path, settings))
        model, tokenizer, lock = loaded
        return cls(model, tokenizer, settings, name=path.name, lock=lock)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop_event = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool)

        inputs = self.tokenizer.apply_chat_template(
            request.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        if prompt_tokens + request.max_tokens > self.settings.generation.context_window:
            raise BackendError(
                f"The prompt has {prompt_tokens} tokens; with {request.max_tokens} new tokens it exceeds the "
                f"context window of {self.settings.generation.context_window}."
            )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        options = {
            **inputs,
            "max_new_tokens": request.max_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([StopWhenAsked()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            **_sampling_options(self.settings.generation.temperature),
        }
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.hf_model.generate(**options)
            except BaseException as error:  # handed to the consumer thread, which re-raises it
                failures.append(error)
                streamer.end()

        with exclusive(self._lock, self.settings.generation.request_timeout_s):
            worker = threading.Thread(target=work, name="rag-transformers-generate", daemon=True)
            worker.start()
            try:
                yield from cut_at_stop(streamer, request.stop)
            finally:
                stop_event.set()
                worker.join()
        if failures:
            raise BackendError(f"transformers generation failed: {_first_line(failures[0])}") from failures[0]


def _sampling_options(temperature: float) -> dict[str, Any]:
    if temperature <= 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": temperature}


def load_transformers(path: Path, settings: Settings) -> tuple[Any, Any, threading.Lock]:
    """(model, tokenizer, lock) for the GGUF at `path`, dequantised to float32 (uncached)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as error:
        raise BackendError(f"The transformers backend needs {error.name}: pip install torch transformers.") from error
    if settings.generation.n_threads:
        torch.set_num_threads(settings.generation.n_threads)
    try:
        tokenizer = load_tokenizer(path, settings.models_dir)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as error:
        raise BackendError(f"transformers could not load {path}: {_first_line(error)}") from error
    model.eval()
    return model, tokenizer, threading.Lock()


def load_tokenizer(path: Path, cache_dir: Path) -> Any:
    """The GGUF's tokenizer, converted once and then read back from `cache_dir`.

    Building a fast tokenizer from the GGUF vocabulary takes about a minute on a busy 2-core machine; the
    saved copy (a few MB, keyed by file name and size) loads in about a second.
    """
    from transformers import AutoTokenizer

    saved = cache_dir / f"{path.stem}-{path.stat().st_size}-tokenizer"
    if (saved / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(saved))
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    partial_dir = saved.with_name(f"{saved.name}.partial-{os.getpid()}")
    try:
        tokenizer.save_pretrained(str(partial_dir))
        partial_dir.replace(saved)  # atomic, so a crash never leaves a half-saved tokenizer in use
    except OSError:
        pass  # a read-only cache only costs the conversion next time
    return tokenizer


def cut_at_stop(pieces: Iterable[str], stops: list[str]) -> Iterator[str]:
    """Pass text through until the first stop string, which is dropped with everything after it.

    Text that could be the start of a stop string is held back until the next piece decides it, so a stop
    string split across two pieces is still caught and never shown.
    """
    stops = [stop for stop in stops if stop]
    if not stops:
        yield from pieces
        return
    hold = max(len(stop) for stop in stops) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = min((index for stop in stops if (index := buffer.find(stop)) >= 0), default=-1)
        if cut >= 0:
            if buffer[:cut]:
                yield buffer[:cut]
            return
        safe = len(buffer) - hold
        if safe > 0:
            yield buffer[:safe]
            buffer = buffer[safe:]
    if buffer:
        yield buffer


# --- OpenAI-compatible servers ------------------------------------------------------------------------------


class OpenAIGenerator:
    """Any server that speaks OpenAI's streaming chat API: vLLM, llama.cpp's server, Ollama, ...

    Server-sent events are read line by line with httpx; leaving the loop closes the response, which tells
    the server the client has gone so it can stop generating.
    """

    name = "openai"

    def __init__(self, settings: Settings):
        if not settings.generation.openai_base_url:
            raise BackendError(
                "The openai backend needs a server: set RAG_OPENAI_BASE_URL, e.g. http://127.0.0.1:8080/v1."
            )
        self.settings = settings
        self.base_url = settings.generation.openai_base_url.rstrip("/")
        self.model = settings.generation.openai_model

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        import httpx

        body: dict[str, Any] = {
            "model": self.settings.generation.openai_model,
            "messages": request.messages,
            "stream": True,
            "max_tokens": request.max_tokens,
            "temperature": self.settings.generation.temperature,
        }
        if request.stop:
            body["stop"] = request.stop
        headers = {"Authorization": f"Bearer {self.settings.generation.openai_api_key}"}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(self.settings.generation.request_timeout_s)) as client,
                client.stream("POST", self.url, json=body, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    detail = _first_line(response.read().decode("utf-8", "replace")) or response.reason_phrase
                    raise BackendError(f"{self.url} answered HTTP {response.status_code}: {detail[:200]}")
                yield from self._parse_events(response.iter_lines())
        except httpx.TimeoutException as error:
            raise BackendError(
                f"The server at {self.url} did not answer within {self.settings.generation.request_timeout_s:g} s."
            ) from error
        except httpx.HTTPError as error:
            raise BackendError(f"Cannot reach the server at {self.url}: {_first_line(error)}") from error

    def _parse_events(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank separators, comments (': ping') and event names carry no text
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError as error:
                raise BackendError(f"{self.url} sent an event that is not JSON: {data[:80]}") from error
            if event.get("error"):
                raise BackendError(f"{self.url} reported an error: {_error_message(event['error'])}")
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return _first_line(error.get("message") or error)
    return _first_line(error)


# --- extractive (no LLM) ------------------------------------------------------------------------------------


class ExtractiveGenerator:
    """Answers with the source sentences that share the most words with the question, each cited as [n].

    No model, so it is instant and always available: the fallback when no LLM can run, and the backend the
    unit tests use. Words are compared after lower-casing, dropping stopwords and a plural 's'; each shared
    word counts by its rarity among the candidate sentences, so 'XNet' outweighs 'learning'. A sentence that
    shares no word with the question is never used; when none does, the answer is the stage's decline text.
    """

    name = "extractive"
    model = "extractive"

    def __init__(self, settings: Settings):
        self.settings = settings

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        chosen = self.select(request.question, request.sources)
        if not chosen:
            yield decline_text()
            return
        words_left = request.max_tokens
        for index, (sentence, number) in enumerate(chosen):
            words_left -= len(sentence.split())
            if index > 0 and words_left < 0:
                return
            yield ("" if index == 0 else " ") + f"{_without_final_period(sentence)} [{number}]."

    def select(self, question: str, sources: list[Source]) -> list[tuple[str, int]]:
        """The best (sentence, source number) pairs, best first, at most `settings.generation.extractive_sentences`."""
        question_terms = _terms(question)
        candidates = [
            (sentence, source, position)
            for source in sources
            for position, sentence in enumerate(split_prose(source.paper.abstract or source.passage))
        ]
        if not question_terms or not candidates:
            return []
        sentence_terms = [_terms(sentence) for sentence, _, _ in candidates]
        weight = _rarity_weights(sentence_terms)
        scored = []
        for (sentence, source, position), terms in zip(candidates, sentence_terms, strict=True):
            shared = terms & question_terms
            if not shared:
                continue
            title_bonus = 0.5 * len(_terms(source.paper.title) & question_terms)
            score = sum(weight[term] for term in shared) / math.sqrt(len(terms)) + title_bonus
            scored.append((-score, source.number, position, sentence))
        scored.sort()
        return [
            (sentence, number) for _, number, _, sentence in scored[: self.settings.generation.extractive_sentences]
        ]


def _terms(text: str) -> set[str]:
    return key_terms(text, style="extractive")


def _rarity_weights(term_sets: list[set[str]]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for terms in term_sets:
        for term in terms:
            counts[term] = counts.get(term, 0) + 1
    total = len(term_sets)
    return {term: 1.0 + math.log(total / count) for term, count in counts.items()}


def _without_final_period(sentence: str) -> str:
    return sentence[:-1] if sentence.endswith(".") else sentence


def decline_text() -> str:
    """The answer stage's exact refusal, so extractive declines look like LLM declines."""
    from rag.prompts import DECLINE_TEXT

    return DECLINE_TEXT


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""
