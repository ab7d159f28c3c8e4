"""The LangChain integration in real LCEL chains: the bot as a `Runnable`, the search as a `BaseRetriever`.

A real `Bot` over the five fixture papers, with the tiny embedder and the extractive (no-LLM) backend.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from rag import Answer, Bot, QuestionError, Restart
from rag.integrations.langchain import BotRunnable, PaperRetriever, history_pairs

SNR_QUESTION = "Which distance metric for deep metric learning is based on the signal-to-noise ratio?"


@pytest.fixture
def bot(settings, papers) -> Bot:
    bot = Bot(settings)
    bot.index.ingest(papers)
    return bot


def cited_ids(answer: Answer) -> list[str]:
    return [citation.paper_id for citation in answer.citations]


def test_bot_runnable_answers_inside_an_lcel_chain(bot):
    """A step before the bot shapes its input, a step after reads the `Answer`: both work through `|`."""
    chain = (
        RunnableLambda(lambda text: {"question": text.strip(), "history": []})
        | BotRunnable(bot=bot)
        | RunnableLambda(lambda answer: (answer.text, cited_ids(answer)))
    )
    text, cited = chain.invoke(f"   {SNR_QUESTION}  ")
    assert text and cited[0] == "snr-metric"


def test_retriever_feeds_the_bot_in_one_chain(bot):
    """Retriever -> question about its best paper -> bot: the answer cites the paper the retriever found."""
    ask_about_top = RunnableLambda(lambda docs: f"What does the paper '{docs[0].metadata['title']}' propose?")
    chain = PaperRetriever(searcher=bot, k=2) | ask_about_top | BotRunnable(bot=bot)
    answer = chain.invoke("feature pyramids with lateral connections for detection")
    assert isinstance(answer, Answer)
    assert cited_ids(answer)[0] == "fpn"


def test_retriever_and_bot_side_by_side_in_a_parallel_chain(bot):
    """The usual RAG layout: the same question goes to the retriever (formatted) and to the bot."""
    titles = RunnableLambda(lambda docs: [doc.metadata["title"] for doc in docs])
    chain = RunnableParallel(
        papers=PaperRetriever(searcher=bot, k=3) | titles,
        answer=BotRunnable(bot=bot),
        question=RunnablePassthrough(),
    )
    result = chain.invoke(SNR_QUESTION)
    assert result["question"] == SNR_QUESTION
    assert result["papers"][0].startswith("Signal-to-Noise Ratio")
    assert cited_ids(result["answer"])[0] == "snr-metric"


def test_stream_yields_text_pieces_then_the_answer_last(bot):
    items = list(BotRunnable(bot=bot).stream(SNR_QUESTION))
    final = items[-1]
    assert isinstance(final, Answer) and cited_ids(final)[0] == "snr-metric"
    assert sum(isinstance(item, Answer) for item in items) == 1
    pieces = [item for item in items[:-1] if not isinstance(item, Restart)]
    assert pieces and all(isinstance(piece, str) for piece in pieces)


def test_a_step_after_a_streamed_bot_receives_the_answer(bot):
    """Streaming a chain: the step after the bot gets the `Answer`, not the text pieces glued together, and the
    bot's traced run ends with the `Answer` too."""
    ended = []
    runnable = BotRunnable(bot=bot).with_listeners(on_end=lambda run: ended.append(run.outputs))
    chain = runnable | RunnableLambda(lambda answer: cited_ids(answer))
    assert list(chain.stream(SNR_QUESTION)) == [["snr-metric"]]
    assert isinstance(ended[0]["output"], Answer)


def test_a_question_streamed_in_pieces_is_asked_once_whole(bot):
    """An earlier step that streams the question (as a model would write it): the bot asks it once, whole."""
    halves = ["Which distance metric for deep metric learning ", "is based on the signal-to-noise ratio?"]
    items = list(BotRunnable(bot=bot).transform(iter(halves)))
    assert sum(isinstance(item, Answer) for item in items) == 1
    assert items[-1].question == SNR_QUESTION


class RecordingBot:
    """Stands in for `Bot` where only the arguments the runnable passes matter."""

    def __init__(self):
        self.calls = []

    def ask(self, question, history=(), k=None, filters=None):
        self.calls.append((question, list(history), k))
        return Answer(question=question, text="ok", backend="recording")


def test_history_given_as_messages_or_pairs_reaches_the_bot_as_pairs():
    recording = RecordingBot()
    runnable = BotRunnable(bot=recording, k=2)
    messages = [
        SystemMessage("be brief"),
        HumanMessage("Which paper builds feature pyramids?"),
        AIMessage("Feature Pyramid Networks [1]."),
        HumanMessage("a question left without a reply"),
    ]
    runnable.invoke({"question": "How fast is it?", "history": messages})
    runnable.invoke({"question": "And its authors?", "history": [("q1", "a1")]})
    runnable.invoke("Standalone?")
    assert recording.calls == [
        ("How fast is it?", [("Which paper builds feature pyramids?", "Feature Pyramid Networks [1].")], 2),
        ("And its authors?", [("q1", "a1")], 2),
        ("Standalone?", [], 2),
    ]
    assert history_pairs([]) == []


@pytest.mark.parametrize("bad", [42, {"history": []}, ["a question in a list"]])
def test_input_that_is_not_a_question_is_a_one_line_question_error(bad):
    with pytest.raises(QuestionError, match="question"):
        BotRunnable(bot=RecordingBot()).invoke(bad)
