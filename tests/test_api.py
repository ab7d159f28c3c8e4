"""The public API end to end with the tiny embedder and the extractive backend, including hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rag import Answer, Bot, ConfigError, IngestProgress, QuestionError, RagError, Source, collections


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
    bot = Bot(settings.with_changes(corpus_paths=[corpus]))
    assert bot.search("feature pyramid object detection", k=1)[0].paper.id == "fpn"


def test_an_index_built_from_the_default_corpus_follows_its_changes(settings, tmp_path, papers):
    corpus = jsonl(tmp_path / "corpus.jsonl", papers[:2])
    settings = settings.with_changes(corpus_paths=[corpus])
    Bot(settings).ensure_index()
    jsonl(corpus, papers[:3])  # the default corpus (or the code reading it) changed since
    bot = Bot(settings)
    assert {source.paper.id for source in bot.search("anything", k=10)} == {p.id for p in papers[:3]}
    jsonl(corpus, papers[:4])
    assert bot.index.paper_count() == 3  # checked once per bot, not on every question
    assert len(bot.search("anything", k=10)) == 3


def test_a_collection_of_the_users_own_files_is_not_filled_from_the_default_corpus(settings, tmp_path, papers):
    settings = settings.with_changes(corpus_paths=[jsonl(tmp_path / "default.jsonl", papers[:3])])
    Bot(settings).ingest([jsonl(tmp_path / "mine.jsonl", papers[3:5])])
    bot = Bot(settings)
    bot.ensure_index()
    assert {paper.id for paper in bot.index.papers().values()} == {p.id for p in papers[3:5]}


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


def jsonl(path, papers):
    import json

    path.write_text("\n".join(json.dumps({"id": p.id, "title": p.title, "text": p.abstract}) for p in papers))
    return path


def test_ingest_passes_progress_through(settings, papers, tmp_path):
    seen: list[IngestProgress] = []
    report = Bot(settings).ingest([jsonl(tmp_path / "five.jsonl", papers)], progress=seen.append)
    assert report.chunks_added == 5
    assert seen[0].done == 0 and seen[-1].done == seen[-1].total == 5


def test_a_bot_for_another_collection_shares_the_models_and_the_generation_lock(bot, papers):
    other = bot.for_collection("second")
    assert other.settings.collection == "second" and bot.settings.collection == "test"
    assert other.generator is bot.generator and other.embedder is bot.embedder and other.judge is bot.judge
    with bot._generate_lock:  # one model computes one answer at a time, whichever collection asks
        assert not other._generate_lock.acquire(blocking=False)
    assert bot.for_collection("second") is other  # kept per name
    assert other.for_collection("test") is bot and other.for_collection("third") is bot.for_collection("third")
    assert other.index.sentence_vectors is bot.index.sentence_vectors  # one copy of the store's file


def test_a_bot_for_another_collection_reads_that_collection_only(bot, papers, tmp_path):
    other = bot.for_collection("second")
    other.ingest([jsonl(tmp_path / "one.jsonl", [papers[2]])])
    assert [source.paper.id for source in other.search("deep networks", k=5)] == ["fpn"]
    assert len(bot.search("deep networks", k=5)) == 5
    assert other.ask("What do feature pyramids add to object detection?").citations[0].paper_id == "fpn"


def test_another_collection_without_papers_is_a_one_line_error_not_a_copy_of_the_default_corpus(bot):
    from rag import IndexError_

    empty = bot.for_collection("empty-one")
    with pytest.raises(IndexError_) as caught:
        empty.search("deep networks")
    assert "'empty-one' does not exist" in str(caught.value) and "\n" not in str(caught.value)
    assert all(info.name != "empty-one" for info in collections(bot.settings))


class OtherModel:
    """An embedder of another model: a bot with the tiny model must not open (and so rebuild) its collection."""

    name, dimension = "other-model", 8

    def embed(self, texts):
        import numpy as np

        return np.full((len(texts), self.dimension), 8**-0.5, dtype=np.float32)


def test_collections_lists_every_collection_of_the_store(bot, papers):
    from rag.index import open_index

    bot.for_collection("second").index.ingest(papers[:2])
    with open_index(bot.settings.with_changes(collection="foreign"), OtherModel()) as foreign:
        foreign.ingest(papers[:1])
    listed = {info.name: info for info in collections(bot.settings)}
    assert (listed["test"].chunks, listed["test"].papers) == (5, 5)
    assert (listed["second"].chunks, listed["second"].papers) == (2, 2)
    assert listed["foreign"].embedding_model == "other-model"
    assert [info.name for info in bot.collections()] == ["second", "test"]  # what this bot can read


@pytest.mark.parametrize("name", ["x", "my papers", "../../etc", "a..b", "-lead"])
def test_an_unusable_collection_name_is_a_one_line_config_error(bot, name):
    with pytest.raises(ConfigError) as caught:
        bot.for_collection(name)
    assert "\n" not in str(caught.value) and "collection name" in str(caught.value)
