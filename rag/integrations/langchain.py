"""LangChain adapter: our hybrid paper search as a `langchain_core` `BaseRetriever`.

    >>> from rag import Bot
    >>> from rag.integrations.langchain import PaperRetriever
    >>> docs = PaperRetriever(searcher=Bot(), k=3).invoke("robust metric learning")

Each `Document` is one paper (never two chunks of the same paper), with the paper id, title, authors,
retrieval score and its number among the results in `metadata`, so a chain can cite it the way `rag` does.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from rag.types import Filters, Source


def source_to_document(source: Source, content: Literal["passage", "abstract"] = "passage") -> Document:
    """One retrieved paper as a LangChain `Document`."""
    paper = source.paper
    text = source.passage if content == "passage" and source.passage else paper.abstract
    metadata: dict[str, Any] = {
        "paper_id": paper.id,
        "title": paper.title,
        "authors": list(paper.authors),
        "number": source.number,
        "score": source.score,
        "dense_score": source.dense_score,
        "sources": list(paper.sources),
    }
    for name in ("session", "moderator", "day", "time_slot", "year"):
        if getattr(paper, name) is not None:
            metadata[name] = getattr(paper, name)
    return Document(page_content=text, metadata=metadata, id=paper.id)


class PaperRetriever(BaseRetriever):
    """Wraps anything with `.search(query, k=, filters=) -> list[Source]`: a `Bot` or a `Retriever`.

    Use a `Bot` to get question cleaning and the index built on first use; a `Retriever` to skip both.
    """

    searcher: Any
    """A `rag.Bot` or `rag.retrieve.Retriever`."""
    k: int | None = None
    """Papers per query (None: `settings.top_k`)."""
    filters: Filters | None = None
    """Metadata filters applied to every query."""
    content: Literal["passage", "abstract"] = "passage"
    """`page_content`: the best-matching chunk (title, authors, sentences) or the whole abstract."""

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        sources = self.searcher.search(query, k=self.k, filters=self.filters)
        return [source_to_document(source, self.content) for source in sources]
