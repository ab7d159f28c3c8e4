"""The public entry points: `Bot` wires corpus -> index -> retrieve -> answer; `ask()` and friends use one.

Everything heavy is created on first use and then kept, so the first question pays the model loads and later
ones do not. A `Bot` is safe to share between threads for retrieval; generation is serialised by a lock
because a local model computes one answer at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

from rag.errors import IndexError_, QuestionError
from rag.settings import Settings, check_collection_name
from rag.types import (
    Answer,
    ClaimCheck,
    CollectionInfo,
    Filters,
    History,
    IngestProgress,
    IngestReport,
    Paper,
    PaperVerdict,
    Restart,
    Source,
)

Progress = Callable[[IngestProgress], None]


class Bot:
    """One question-answering bot over one collection. Create it once, ask it many times.

    `for_collection(name)` gives a bot over another collection of the same store that shares this one's
    models and generation lock (its "family"): one local model computes one answer at a time.
    """

    def __init__(self, settings: Settings | None = None, *, embedder=None, generator=None):
        self.settings = settings or Settings()
        self._embedder = embedder
        self._generator = generator
        self._generate_lock = threading.Lock()
        self._ingest_lock = threading.Lock()
        self._root = self
        """The bot whose models, judge and generation lock this one uses (itself, unless made by for_collection)."""
        self._family: dict[str, Bot] = {}
        self._family_lock = threading.Lock()
        self._sentence_vectors = None  # one in-memory copy of <index_dir>/sentence-vectors.bin per family
        self._index_checked = False
        self._check_lock = threading.Lock()
        """Whether `ensure_index` has run: the default corpus is compared with the index once per bot."""

    def for_collection(self, name: str) -> Bot:
        """A bot over collection `name` of the same store (created on first ingest), sharing this bot's
        embedder, generator, judge and generation lock; made once per name and kept.

        Raises ConfigError (one line) for a name Chroma would refuse."""
        name = check_collection_name(name.strip() if isinstance(name, str) else name)
        root = self._root
        if name == root.settings.collection:
            return root
        with root._family_lock:
            bot = root._family.get(name)
            if bot is None:
                bot = Bot(root.settings.with_changes(collection=name))
                bot._root = root
                bot._generate_lock = root._generate_lock
                root._family[name] = bot
            return bot

    def collections(self) -> list[CollectionInfo]:
        """The collections of this bot's store that its embedding model can read (others would be rebuilt
        on opening), by name; its own collection is always listed."""
        own = self.settings.collection
        model = getattr(self.embedder, "name", None)
        found = [info for info in collections(self.settings) if info.embedding_model == model or info.name == own]
        if all(info.name != own for info in found):
            found = sorted([*found, CollectionInfo(name=own, chunks=0)], key=lambda info: info.name)
        return found

    # --- stages, created lazily -------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._root is not self:
            return self._root.embedder
        if self._embedder is None:
            from rag.embeddings import get_embedder

            self._embedder = get_embedder(self.settings)
        return self._embedder

    @cached_property
    def index(self):
        from rag.index import open_index

        index = open_index(self.settings, self.embedder)
        root = self._root
        with root._family_lock:  # the file is one per store: one copy in memory serves every collection
            if root._sentence_vectors is None:
                root._sentence_vectors = index.sentence_vectors
            index.sentence_vectors = root._sentence_vectors
        return index

    @cached_property
    def retriever(self):
        from rag.retrieve import Retriever

        return Retriever(self.index, self.embedder, self.settings)

    @property
    def generator(self):
        if self._root is not self:
            return self._root.generator
        if self._generator is None:
            from rag.generate import load_generator

            self._generator = load_generator(self.settings)
        return self._generator

    @cached_property
    def answerer(self):
        from rag.answer import Answerer

        return Answerer(
            self.generator, self.embedder, self.settings, sentence_vectors=self.index.sentence_vectors, judge=self.judge
        )

    @cached_property
    def judge(self):
        if self._root is not self:  # the judge keeps the model's state for its prompt: one per model
            return self._root.judge
        from rag.judge import judge_for

        return judge_for(self.generator, self.embedder, self.settings)

    @cached_property
    def claim_checker(self):
        from rag.claims import ClaimChecker

        return ClaimChecker(self.judge, self.embedder, self.settings, sentence_vectors=self.index.sentence_vectors)

    # --- entry points ---------------------------------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path] | None = None, progress: Progress | None = None) -> IngestReport:
        """Parse the corpus files (default: the bundled pages) and add what is new or changed to the index.

        `progress`, if given, is called with an `IngestProgress` before the first write and after each step."""
        from rag.corpus import load_corpus
        from rag.index import corpus_fingerprint

        started = time.perf_counter()
        with self._ingest_lock:
            corpus = load_corpus(paths or self.settings.corpus_paths)
            if paths and not corpus.papers:  # nothing readable: no write, and no empty collection created
                return IngestReport(
                    files=corpus.files,
                    entries=corpus.entries,
                    missing_abstracts=corpus.missing_abstracts,
                    problems=corpus.problems,
                    seconds=round(time.perf_counter() - started, 3),
                )
            report = self.index.ingest(corpus.papers, progress=progress)
            if not paths:
                self.index.remember_default_corpus(corpus_fingerprint(corpus.papers, self.settings))
            self.__dict__.pop("retriever", None)
            if report.chunks_added:  # derived files (BM25, catalog) are rebuilt and saved now, not at first question
                self.retriever.corpus()
        return report.model_copy(
            update={
                "files": corpus.files,
                "entries": corpus.entries,
                "papers": len(corpus.papers),
                "missing_abstracts": corpus.missing_abstracts,
                "problems": corpus.problems + report.problems,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    def ensure_index(self) -> None:
        """Build the index from the default corpus on first use, so a fresh install answers at once; and, once
        per bot, bring a collection built from the default corpus up to date when that corpus, or the code that
        reads it, has changed since (an upgrade that reads the bundled pages better reaches an existing index
        without a manual `rag ingest`; only changed papers are re-embedded)."""
        if self._index_checked:
            return
        with self._check_lock:  # chat users asking at once: one of them checks, the others wait for it
            if self._index_checked:
                return
            if self._root is not self:  # another collection of the store: the user's, never the default corpus
                self.require_papers()
            elif self.index.count() == 0:
                self.ingest()
            elif (stored := self.index.default_corpus()) is not None:
                from rag.corpus import load_corpus
                from rag.index import corpus_fingerprint

                if stored != corpus_fingerprint(load_corpus(self.settings.corpus_paths).papers, self.settings):
                    self.ingest()
            self._index_checked = True

    def require_papers(self) -> None:
        """Raise IndexError_ (one line) when this bot's collection holds no papers, without creating it: asking
        such a collection would otherwise fill it from the default corpus (a mistyped name answered from the
        bundled papers)."""
        name = self.settings.collection
        found = {info.name: info.chunks for info in collections(self.settings)}
        if found.get(name):
            return
        others = ", ".join(sorted(other for other, chunks in found.items() if chunks)) or "none yet"
        state = "holds no papers yet" if name in found else "does not exist"
        raise IndexError_(
            f"The collection {name!r} {state}: import papers into it with `rag ingest FILE --collection {name}` "
            f"or the chat's Library (collections with papers: {others})."
        )

    def warm_up(self) -> None:
        """Load every model, build the index if needed and prime the generator, so the first question is fast.

        The chat calls this at start-up; `ask()` works without it (it loads what it needs on first use).
        """
        self.ensure_index()
        self.retriever.search("warm-up", k=1)  # builds the lexical index and loads the embedder
        with self._generate_lock:
            self.answerer.sentence_vectors.load()
            self.answerer.warm_up()
            warm_judge = getattr(self.judge, "warm_up", None)
            if warm_judge is not None and self.settings.answer.judge_answers:
                warm_judge()  # its prefix is cached apart from the answer's, which stays in place

    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Source]:
        """Papers most relevant to `query`, best first, numbered 1..k."""
        query = self.check_question(query)
        self.ensure_index()
        return self.retriever.search(query, k=k, filters=filters)

    def ask_stream(
        self,
        question: str,
        history: History = (),
        k: int | None = None,
        filters: Filters | None = None,
    ) -> Iterator[str | Restart | Answer]:
        """Yield answer tokens as they are generated, then the verified `Answer` as the last item.

        A `Restart` item means the tokens streamed so far are withdrawn and the answer starts again: the first
        prompt leaves out weak papers (`Settings.answer.weak_source_margin`), and its answer was declined."""
        question = self.check_question(question)
        self.ensure_index()
        with self._generate_lock:
            yield from self.answerer.stream(question, self.retriever, history=history, k=k, filters=filters)

    def ask(
        self,
        question: str,
        history: History = (),
        k: int | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        """Answer `question` from the collection, with verified citations; see `Answer`."""
        final = None
        for item in self.ask_stream(question, history=history, k=k, filters=filters):
            if isinstance(item, Answer):
                final = item
        assert final is not None, "the answer stage always ends with an Answer"
        return final

    def check(self, claim: str, k: int | None = None, filters: Filters | None = None) -> ClaimCheck:
        """What the collection says of `claim`: the papers that support it, those that contradict it and the
        related ones that are silent, each with its deciding sentence, and an overall verdict."""
        claim = self.check_question(claim)
        self.ensure_index()
        with self._generate_lock:
            return self.claim_checker.check(claim, self.retriever, k=k, filters=filters)

    def check_paper(self, claim: str, paper: Paper) -> PaperVerdict | None:
        """`claim` judged against one given paper (not retrieved): what `check` says of that paper."""
        claim = self.check_question(claim)
        with self._generate_lock:
            return self.claim_checker.check_paper(claim, paper)

    def check_question(self, question: str) -> str:
        """Clean a question, or raise QuestionError with a one-line reason."""
        if not isinstance(question, str):
            raise QuestionError("The question must be text.")
        cleaned = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in question).strip()
        if not cleaned:
            raise QuestionError("The question is empty: type a question about the papers.")
        limit = self.settings.answer.max_question_chars
        if len(cleaned) > limit:
            raise QuestionError(f"The question is {len(cleaned)} characters long; the limit is {limit}.")
        return cleaned


_default_bot: Bot | None = None
_default_lock = threading.Lock()


def default_bot() -> Bot:
    """The process-wide bot used by the module-level functions, built from `Settings()` on first use."""
    global _default_bot
    with _default_lock:
        if _default_bot is None:
            _default_bot = Bot()
        return _default_bot


def ask(question: str, history: History = (), k: int | None = None, filters: Filters | None = None) -> Answer:
    """Answer a question over the default collection. See `Bot.ask`."""
    return default_bot().ask(question, history=history, k=k, filters=filters)


def ask_stream(
    question: str, history: History = (), k: int | None = None, filters: Filters | None = None
) -> Iterator[str | Restart | Answer]:
    """Stream an answer over the default collection. See `Bot.ask_stream`."""
    return default_bot().ask_stream(question, history=history, k=k, filters=filters)


def check(claim: str, k: int | None = None, filters: Filters | None = None) -> ClaimCheck:
    """Check a claim against the default collection. See `Bot.check`."""
    return default_bot().check(claim, k=k, filters=filters)


def search(query: str, k: int | None = None, filters: Filters | None = None) -> list[Source]:
    """Search the default collection. See `Bot.search`."""
    return default_bot().search(query, k=k, filters=filters)


def ingest(paths: Sequence[str | Path] | None = None, progress: Progress | None = None) -> IngestReport:
    """Ingest files into the default collection. See `Bot.ingest`."""
    return default_bot().ingest(paths, progress=progress)


def collections(settings: Settings | None = None) -> list[CollectionInfo]:
    """Every collection in the embedded store or on the Chroma server of `settings` (default: `Settings()`),
    by name, with its chunk count, paper count and embedding model. Raises IndexError_ (one line) when the
    store cannot be opened."""
    from rag.index import list_collections

    return list_collections(settings or Settings())
