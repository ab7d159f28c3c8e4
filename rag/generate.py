"""Generator backends behind one interface: llama.cpp, transformers, OpenAI-compatible servers, extractive.

INTERFACE (fixed; the generation engineer fills in the backends):
    request = GenerationRequest(messages=[{"role": "system", ...}, {"role": "user", ...}], sources=[...],
                                question="...", max_tokens=220, stop=[...])
    generator = load_generator(settings)
    for piece in generator.stream(request):   # text pieces as they are produced
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from rag.settings import Settings
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


def load_generator(settings: Settings) -> Generator:
    """The backend named by `settings.backend` ('auto': llama_cpp if importable, else transformers)."""
    raise NotImplementedError("generation backends are being written")
