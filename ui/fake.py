"""A stand-in `Bot` with the same methods, for UI tests and demos that must not load any model.

It ranks papers by word overlap and answers with the first sentences of the best papers, streamed word by
word with an optional delay, so the chat can be exercised (streaming, Stop, declines, errors) in milliseconds.
`closed` records whether the last stream was closed early, which is how tests see that Stop really stopped it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence

from rag import (
    Answer,
    Citation,
    ClaimCheck,
    CollectionInfo,
    Filters,
    Paper,
    PaperVerdict,
    RagError,
    Restart,
    Settings,
    Source,
)

WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {word for word in WORD.findall(text.lower()) if len(word) > 3}


class FakeBot:
    """Duck-typed `rag.Bot`: `ensure_index`, `embedder`, `generator`, `search`, `ask_stream`, `check`, and the
    Library's `collections` and `for_collection` over `library` (collection name -> papers; default: its own)."""

    def __init__(
        self,
        papers: Sequence[Paper],
        settings: Settings | None = None,
        *,
        delay_s: float = 0.0,
        warmup_s: float = 0.0,
        error: RagError | None = None,
        withdrawn: str | None = None,
        library: dict[str, list[Paper]] | None = None,
    ):
        self.settings = settings or Settings(backend="extractive")
        self._papers = list(papers)
        self.library = library if library is not None else {self.settings.collection: self._papers}
        self._family: dict[str, FakeBot] = {}
        self.delay_s = delay_s
        self.warmup_s = warmup_s
        self.error = error
        self.withdrawn = withdrawn
        """Text streamed first and then withdrawn with a `Restart`, as a declined lean first answer is."""
        self.calls: list[dict] = []
        self.closed = threading.Event()
        self.finished = threading.Event()

    @property
    def embedder(self) -> object:
        time.sleep(self.warmup_s / 2)
        return object()

    @property
    def generator(self) -> object:
        time.sleep(self.warmup_s / 2)
        return object()

    @property
    def index(self) -> FakeBot:
        return self

    def count(self) -> int:
        return len(self._papers)

    def papers(self) -> dict[str, Paper]:
        return {paper.id: paper for paper in self._papers}

    def ensure_index(self) -> None:
        return None

    def collections(self) -> list[CollectionInfo]:
        return [CollectionInfo(name=name, chunks=len(papers)) for name, papers in sorted(self.library.items())]

    def for_collection(self, name: str) -> FakeBot:
        """A fake bot over `library[name]` (empty when unknown), made once per name, as `Bot.for_collection`."""
        if name == self.settings.collection:
            return self
        if name not in self._family:
            settings = self.settings.with_changes(collection=name)
            self._family[name] = FakeBot(self.library.get(name, []), settings, library=self.library)
        return self._family[name]

    def warm_up(self) -> None:
        _ = self.generator

    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Source]:
        wanted = _words(query)
        filters = filters or Filters()
        scored = []
        for paper in self._papers:
            if filters.source and not any(filters.source.lower() in name.lower() for name in paper.sources):
                continue
            if filters.session and filters.session.lower() not in (paper.session or "").lower():
                continue
            if filters.author and not any(filters.author.lower() in name.lower() for name in paper.authors):
                continue
            overlap = len(wanted & _words(paper.title + " " + paper.abstract))
            scored.append((overlap / max(len(wanted), 1), paper))
        scored.sort(key=lambda pair: -pair[0])
        return [
            Source(number=rank, paper=paper, score=score, dense_score=score, passage=paper.abstract)
            for rank, (score, paper) in enumerate(scored[: k or self.settings.retrieval.top_k], start=1)
        ]

    def check(self, claim: str, k: int | None = None, filters: Filters | None = None) -> ClaimCheck:
        """The best papers, each "supported" when it shares most of the claim's words, with its first sentence."""
        self.calls.append({"claim": claim, "k": k, "filters": filters})
        wanted = _words(claim)
        papers = []
        for source in self.search(claim, k=k, filters=filters):
            shared = len(wanted & _words(source.paper.abstract)) / max(1, len(wanted))
            verdict = "supported" if shared >= 0.5 else "not_addressed"
            sentence = source.paper.abstract.split(". ")[0]
            papers.append(
                PaperVerdict(
                    paper_id=source.paper_id,
                    title=source.title,
                    verdict=verdict,
                    sentence=sentence,
                    number=source.number,
                )
            )
        overall = "supported" if any(paper.verdict == "supported" for paper in papers) else "not_enough_info"
        return ClaimCheck(claim=claim, verdict=overall, papers=papers)

    def ask_stream(
        self,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        k: int | None = None,
        filters: Filters | None = None,
    ) -> Iterator[str | Restart | Answer]:
        self.calls.append({"question": question, "history": list(history), "k": k, "filters": filters})
        self.closed.clear()
        self.finished.clear()
        if self.error is not None:
            raise self.error
        if not question.strip():
            raise RagError("The question is empty: type a question about the papers.")
        sources = self.search(question, k=k, filters=filters)
        relevant = [source for source in sources if source.score > 0]
        try:
            if not relevant:
                text = "The papers in this collection do not answer that question."
                yield text
                yield Answer(question=question, text=text, sources=sources, declined=True, backend="fake")
                return
            if self.withdrawn:
                yield self.withdrawn
                yield Restart(reason="Asking again with more papers in view.")
            cited = relevant[:2]
            text = " ".join(
                f"{source.paper.abstract.split('. ')[0].rstrip('.')} [{source.number}]." for source in cited
            )
            for word in re.findall(r"\S+\s*", text):
                if self.delay_s:
                    time.sleep(self.delay_s)
                yield word
            yield Answer(
                question=question,
                text=text,
                citations=[Citation(number=s.number, paper_id=s.paper.id, title=s.paper.title) for s in cited],
                sources=sources,
                backend="fake",
                timings={"total": 0.0},
            )
            self.finished.set()
        except GeneratorExit:
            self.closed.set()
            raise
