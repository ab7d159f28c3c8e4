"""LangChain integration: the bot as a `Runnable`, our hybrid paper search as a `BaseRetriever`.

    >>> from langchain_core.runnables import RunnableLambda
    >>> from rag import Bot
    >>> from rag.integrations.langchain import BotRunnable, PaperRetriever
    >>> bot = Bot()
    >>> chain = BotRunnable(bot=bot) | RunnableLambda(lambda answer: answer.text)
    >>> chain.invoke("Which papers make metric learning robust to label noise?")
    >>> docs = PaperRetriever(searcher=bot, k=3).invoke("robust metric learning")

`BotRunnable` takes a question string or `{"question": ..., "history": ...}` (history: (question, answer) pairs
or LangChain messages) and returns the verified `Answer`. Its `.stream()` yields what `Bot.ask_stream` yields:
text pieces as the model writes them, a `Restart` when the draft so far is withdrawn, and the verified `Answer`
last. We chose the bot's own stream protocol over a LangChain chunk type because the `Answer` (citations,
sentence checks, sources) only exists once the whole text is verified; it cannot be the sum of the pieces.
LangChain copes with that: a later step of a chain, and the traced run's output, get the last chunk that cannot
be added to the ones before, which is the `Answer`. The async methods are LangChain's defaults (the sync ones in
a thread), so `astream` yields the `Answer` once.

Each `Document` of `PaperRetriever` is one paper (never two chunks of the same paper), with the paper id, title,
authors, retrieval score and its number among the results in `metadata`, so a chain can cite it the way `rag` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal, NotRequired

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from typing_extensions import TypedDict  # pydantic reads only this TypedDict before Python 3.12

from rag.errors import QuestionError
from rag.types import Answer, Filters, Restart, Source


class QuestionInput(TypedDict):
    """A question with the conversation so far, for follow-ups ("and how fast is it?")."""

    question: str
    history: NotRequired[Sequence[tuple[str, str]] | Sequence[BaseMessage]]


BotInput = str | QuestionInput
"""What `BotRunnable` takes: the question alone, or the question with its history."""


class BotRunnable(RunnableSerializable[BotInput, Answer]):
    """A `rag.Bot` as a LangChain `Runnable`: question in, verified `Answer` out, streamable.

    Composes with `|` like any runnable; `batch` asks the questions one after another in threads, and the bot
    serialises generation itself (a local model computes one answer at a time).
    """

    bot: Any
    """The `rag.Bot` that answers (its index is built on first use, as with `Bot.ask`)."""
    k: int | None = None
    """Papers retrieved per question (None: `settings.retrieval.top_k`)."""
    filters: Filters | None = None
    """Metadata filters applied to every question."""

    def invoke(self, input: BotInput, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        """The verified `Answer` to `input` (callbacks and tracing see one chain run)."""
        return self._call_with_config(self._answer, input, config, run_type="chain")

    def stream(
        self, input: BotInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[str | Restart | Answer]:
        """Text pieces as they are generated, a `Restart` when they are withdrawn, then the `Answer` last."""
        yield from self.transform(iter([input]), config, **kwargs)

    def transform(
        self, input: Iterator[BotInput], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[str | Restart | Answer]:
        """Like `stream`, for a question that arrives in pieces from an earlier step (it is asked once whole)."""
        yield from self._transform_stream_with_config(input, self._stream_answer, config, run_type="chain")

    def _answer(self, input: BotInput) -> Answer:
        question, history = read_input(input)
        return self.bot.ask(question, history=history, k=self.k, filters=self.filters)

    def _stream_answer(self, pieces: Iterator[BotInput]) -> Iterator[str | Restart | Answer]:
        question, history = read_input(_joined(pieces))
        yield from self.bot.ask_stream(question, history=history, k=self.k, filters=self.filters)


def _joined(pieces: Iterator[Any]) -> Any:
    """The whole input from its streamed pieces: text pieces concatenate, a dict arrives whole (last one wins)."""
    whole = None
    for piece in pieces:
        if isinstance(whole, str) and isinstance(piece, str):
            whole += piece
        else:
            whole = piece
    return whole


def read_input(value: Any) -> tuple[str, list[tuple[str, str]]]:
    """(question, history pairs) from a string or a `QuestionInput`; anything else is a `QuestionError`."""
    if isinstance(value, str):
        return value, []
    if isinstance(value, dict) and "question" in value:
        return value["question"], history_pairs(value.get("history") or ())
    raise QuestionError('Give the bot a question: a string or {"question": ..., "history": [...]}.')


def history_pairs(turns: Sequence[Any]) -> list[tuple[str, str]]:
    """Earlier turns as (question, answer) pairs: pairs pass through; messages pair each human turn with the AI
    reply after it (system and tool messages are not turns)."""
    pairs: list[tuple[str, str]] = []
    asked: str | None = None
    for turn in turns:
        if not isinstance(turn, BaseMessage):
            question, answer = turn
            pairs.append((str(question), str(answer)))
        elif turn.type == "human":
            asked = str(turn.text)
        elif turn.type == "ai" and asked is not None:
            pairs.append((asked, str(turn.text)))
            asked = None
    return pairs


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
    """Papers per query (None: `settings.retrieval.top_k`)."""
    filters: Filters | None = None
    """Metadata filters applied to every query."""
    content: Literal["passage", "abstract"] = "passage"
    """`page_content`: the best-matching chunk (title, authors, sentences) or the whole abstract."""

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        sources = self.searcher.search(query, k=self.k, filters=self.filters)
        return [source_to_document(source, self.content) for source in sources]
