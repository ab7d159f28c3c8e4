"""Local, offline question answering over machine-learning paper abstracts, with verified citations.

    >>> from rag import ask
    >>> answer = ask("Which papers make metric learning robust to label noise?")
    >>> print(answer.text)            # every claim carries [n] markers
    >>> answer.citations[0].title     # [n] -> the cited paper

The heavy machinery (torch, sentence-transformers, chromadb, the generator) is imported on first use, so
`import rag` stays fast.

`__all__` is the public API: the faces (`rag/cli.py`, `ui/`, `eval/`) import nothing else from `rag`
(tests/test_architecture.py checks it). `benchmark_retrieval` ranks a BEIR-style corpus in a collection of its
own, for eval and bench; `collections` lists the collections of a store (the chat's Library); `normalise_title`
is the key titles are matched by (the corpus's duplicate rule), for eval's gold titles;
`rag.integrations.langchain` adapts the bot and its search to LangChain.
"""

from __future__ import annotations

import os

# Offline by default: no hub downloads, no telemetry. Set before any library that reads them is imported.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

from rag.errors import (  # noqa: E402
    BackendError,
    ConfigError,
    CorpusError,
    IndexError_,
    QuestionError,
    RagError,
)
from rag.settings import BackendName, Settings  # noqa: E402
from rag.types import (  # noqa: E402
    Answer,
    Chunk,
    Citation,
    ClaimCheck,
    CollectionInfo,
    Filters,
    IngestProgress,
    IngestReport,
    Paper,
    PaperVerdict,
    Restart,
    SentenceCheck,
    Source,
    Verdict,
)

__all__ = [
    "Answer",
    "BackendError",
    "BackendName",
    "Bot",
    "Chunk",
    "Citation",
    "ClaimCheck",
    "CollectionInfo",
    "ConfigError",
    "CorpusError",
    "Filters",
    "IndexError_",
    "IngestProgress",
    "IngestReport",
    "Paper",
    "PaperVerdict",
    "QuestionError",
    "RagError",
    "Restart",
    "RetrievalBenchmark",
    "SentenceCheck",
    "Settings",
    "Source",
    "Verdict",
    "ask",
    "ask_stream",
    "benchmark_retrieval",
    "benchmark_settings",
    "check",
    "claim_of",
    "collections",
    "ingest",
    "normalise_title",
    "search",
]

_LAZY = {
    "Bot": "rag.api",
    "ask": "rag.api",
    "ask_stream": "rag.api",
    "search": "rag.api",
    "ingest": "rag.api",
    "check": "rag.api",
    "collections": "rag.api",
    "claim_of": "rag.claims",
    "normalise_title": "rag.text",
    "RetrievalBenchmark": "rag.benchmark",
    "benchmark_retrieval": "rag.benchmark",
    "benchmark_settings": "rag.benchmark",
}
"""Public names whose modules load on first use, so `import rag` never pulls in the pipeline."""


def __getattr__(name: str):
    """Load the pipeline (and its heavy imports) only when an entry point is first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
