"""The public API end to end with the tiny embedder and the extractive backend, including hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rag import Answer, Bot, QuestionError, RagError, Source


@pytest.fixture
def bot(settings, papers) -> Bot:
    bot = Bot(settings)
    bot.index.ingest(papers)
    return bot


def test_ask_returns_a_typed_answer_citing_the_right_paper(bot):
    answer = bot.ask("Which distance metric for deep metric learning is based on the signal-to-noise ratio?")
    assert isinstance(answer, Answer)
    assert not answer.declined
    assert answer.citations, answer.text
    assert answer.citations[0].paper_id == "snr-metric"
    valid = {source.number for source in answer.sources}
    assert {citation.number for citation in answer.citations} <= valid
    assert {"retrieve", "total"} <= set(answer.timings)


def test_ask_stream_yields_text_then_exactly_one_answer(bot):
    items = list(bot.ask_stream("What does Integrated Gradients need to be computed?"))
    assert isinstance(items[-1], Answer)
    assert all(isinstance(item, str) for item in items[:-1])
    assert sum(isinstance(item, Answer) for item in items) == 1


def test_search_returns_each_paper_once(bot):
    sources = bot.search("deep networks", k=5)
    assert all(isinstance(source, Source) for source in sources)
    ids = [source.paper.id for source in sources]
    assert len(ids) == len(set(ids))
    assert [source.number for source in sources] == list(range(1, len(sources) + 1))


@pytest.mark.parametrize("question", ["", "   ", "\x00\x01\x02", "x" * 100_000])
def test_unusable_questions_raise_question_error(bot, question):
    with pytest.raises(QuestionError):
        bot.ask(question)


def test_bot_builds_the_index_on_first_use(settings, tmp_path, papers):
    import json

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": p.id, "title": p.title, "text": p.abstract}) for p in papers))
    bot = Bot(settings.model_copy(update={"corpus_paths": [corpus]}))
    assert bot.search("feature pyramid object detection", k=1)[0].paper.id == "fpn"


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=st.text(min_size=0, max_size=300))
def test_any_text_gives_an_answer_or_a_one_line_error(bot, question):
    """Emoji, other scripts, control characters, injection text: never a crash, never an untyped error."""
    try:
        answer = bot.ask(question)
    except RagError as error:
        assert "\n" not in str(error)
        return
    valid = {source.number for source in answer.sources}
    assert {citation.number for citation in answer.citations} <= valid
