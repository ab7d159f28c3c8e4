"""Follow-ups stay on topic: the previous answer's papers stay in view, and the standalone question keeps them.

Pure functions on the fixture papers, the answer stage with a retriever that ignores the question (so only the
kept papers can put the right paper first), and `Bot.ask(history=...)` end to end with the extractive backend.
"""

from __future__ import annotations

import pytest

from rag.answer import Answerer
from rag.generate import GenerationRequest
from rag.rewrite import (
    clean_rewrite,
    heuristic_rewrite,
    keep_in_view,
    keeps_subject,
    papers_in_view,
    papers_named_in,
    reads_as_question,
)
from rag.settings import Settings
from rag.types import Answer, Citation, Filters, Paper, Source


@pytest.fixture
def by_id(papers) -> dict[str, Paper]:
    return {paper.id: paper for paper in papers}


def sources_of(papers: list[Paper], dense: float = 0.7) -> list[Source]:
    return [
        Source(number=n, paper=paper, score=1.0 / n, dense_score=dense, passage=paper.abstract)
        for n, paper in enumerate(papers, start=1)
    ]


def answer_citing(question: str, sources: list[Source], numbers: list[int], text: str) -> Answer:
    by_number = {source.number: source for source in sources}
    citations = [Citation(number=n, paper_id=by_number[n].paper_id, title=by_number[n].title) for n in numbers]
    return Answer(question=question, text=text, citations=citations, sources=sources)


class OrderedRetriever:
    """Returns its papers in a fixed order whatever the query (as a retriever misled by the follow-up's
    words would); lists them all through `papers()` as the real retriever does."""

    def __init__(self, papers: list[Paper], listed: bool = True):
        self.ordered = papers
        self.queries: list[str] = []
        if listed:
            self.papers = lambda: {paper.id: paper for paper in papers}

    def search(self, query, k=None, filters=None):
        self.queries.append(query)
        return sources_of(self.ordered[: k or len(self.ordered)])

    def is_relevant(self, sources):
        return True


class EchoGenerator:
    """Answers with the first sentence of the first source it is shown, cited; rewrites are scripted."""

    name = "echo"

    def __init__(self, *rewrites: str):
        self.rewrites = list(rewrites)
        self.requests: list[GenerationRequest] = []

    def stream(self, request: GenerationRequest):
        self.requests.append(request)
        if request.stop == ["\n"]:  # the condense request
            yield self.rewrites.pop(0) if self.rewrites else ""
            return
        first = request.sources[0]
        yield f"{first.paper.abstract.split('. ')[1].rstrip('.')} [{first.number}]."


# --- which papers a text names ------------------------------------------------------------------------------


def test_papers_are_named_by_long_title_quoted_short_title_or_a_name_only_they_have(papers, by_id):
    text = (
        "“Axiomatic Attribution for Deep Networks” builds on ViLT [2]; feature pyramid networks for object "
        "detection is a phrase here, and vilt in lower case is not a name."
    )
    named = papers_named_in(text, papers)
    assert [paper.id for paper in named] == ["integrated-gradients", "vilt", "fpn"]  # in order of mention
    assert papers_named_in("adding gradient noise improves learning for very deep networks", papers) == [
        by_id["gradient-noise"]
    ]
    assert papers_named_in("the vilt model and some deep networks", papers) == []


def test_a_name_two_papers_share_names_neither(papers, by_id):
    twin = by_id["vilt"].model_copy(update={"id": "vilt-2", "title": "ViLT: A Second Paper With The Same Name"})
    assert papers_named_in("What does ViLT do?", [*papers, twin]) == []


# --- keeping the papers in view -----------------------------------------------------------------------------


def test_kept_papers_lead_in_retrieval_order_and_a_missing_one_joins(papers, by_id):
    sources = sources_of(papers[:4])  # snr, vilt, fpn, gradient-noise
    kept = keep_in_view(sources, [by_id["integrated-gradients"], by_id["fpn"]], limit=4, first=True)
    assert [source.paper_id for source in kept] == ["fpn", "integrated-gradients", "snr-metric", "vilt"]
    assert [source.number for source in kept] == [1, 2, 3, 4]
    missing = kept[1]
    assert missing.dense_score is None and missing.score == min(source.score for source in sources)


def test_when_not_first_the_ranking_stands_and_a_missing_paper_replaces_the_last(papers, by_id):
    sources = sources_of(papers[:4])
    kept = keep_in_view(sources, [by_id["integrated-gradients"], by_id["vilt"]], limit=4, first=False)
    assert [source.paper_id for source in kept] == ["snr-metric", "vilt", "fpn", "integrated-gradients"]


# --- recovering the previous answer's papers ----------------------------------------------------------------


def test_an_answer_in_the_history_keeps_the_papers_it_cites(papers, by_id):
    sources = sources_of(papers)
    previous = answer_citing("Which model skips convolution?", sources, [2], "ViLT skips convolution [2].")
    retriever = OrderedRetriever(papers)
    assert papers_in_view("And how fast is it?", [("Which model skips convolution?", previous)], retriever) == [
        by_id["vilt"]
    ]
    assert retriever.queries == []  # the Answer says which papers: nothing is searched again
    declined = previous.model_copy(update={"declined": True, "citations": []})
    assert papers_in_view("And how fast is it?", [("q", declined)], retriever) == []
    standalone = "Which paper proposes a distance metric based on the signal-to-noise ratio?"
    assert papers_in_view(standalone, [("q", previous)], retriever) == []  # not a follow-up


def test_plain_text_history_is_matched_against_every_paper(papers, by_id):
    history = [("Which paper studies attribution?", "“Axiomatic Attribution for Deep Networks” does [1].")]
    assert papers_in_view("Who wrote it?", history, OrderedRetriever(papers)) == [by_id["integrated-gradients"]]


def test_plain_text_markers_outweigh_a_name_mentioned_in_passing(papers, by_id):
    retriever = OrderedRetriever([by_id["snr-metric"], by_id["vilt"]], listed=False)
    history = [("Which metric uses the signal-to-noise ratio?", "It is a robust distance, unlike ViLT [1].")]
    assert papers_in_view("How well does it do?", history, retriever) == [by_id["snr-metric"]]
    named_only = [("Which metric uses the signal-to-noise ratio?", "It is a robust distance, unlike ViLT.")]
    assert papers_in_view("How well does it do?", named_only, retriever) == [by_id["vilt"]]


def test_plain_text_markers_map_onto_the_previous_questions_retrieval(papers, by_id):
    retriever = OrderedRetriever([by_id["fpn"], by_id["vilt"]], listed=False)
    history = [("Which detector uses lateral connections?", "A top-down pathway with lateral connections [1].")]
    assert papers_in_view("How fast is it?", history, retriever) == [by_id["fpn"]]
    assert retriever.queries == ["Which detector uses lateral connections?"]
    assert papers_in_view("How fast is it?", [("q", "The collection does not say.")], retriever) == []


# --- the standalone question keeps its subject --------------------------------------------------------------


def test_heuristic_rewrite_names_the_paper_in_view(by_id):
    history = [("Which model processes images without convolution?", "It is fast [1].")]
    rewrite = heuristic_rewrite("And how fast is it?", history, [by_id["vilt"]])
    assert rewrite.startswith("ViLT ") and rewrite.endswith("And how fast is it?")
    assert "convolution" in rewrite


def test_heuristic_rewrite_of_a_follow_up_of_a_follow_up_uses_the_kept_standalone_question(papers):
    previous = Answer(
        question="And its speed?", standalone_question="ViLT speed of vision-language models", text="Fast [1]."
    )
    rewrite = heuristic_rewrite("Who wrote it?", [("And its speed?", previous)])
    assert "ViLT" in rewrite and "vision-language" in rewrite


def test_a_model_rewrite_that_drops_the_subject_gets_it_appended(by_id):
    history = [("What is ViLT, the transformer without region supervision?", "ViLT [1] is a minimal model.")]
    kept = clean_rewrite("How fast is ViLT?", "How fast is it?", history, [by_id["vilt"]])
    assert kept == "How fast is ViLT?"
    dropped = clean_rewrite("How fast is the model?", "How fast is it?", history, [by_id["vilt"]])
    assert dropped == "How fast is the model? (about ViLT)"
    assert not keeps_subject("How fast is the model?", "How fast is it?", history)
    assert keeps_subject("How fast is the transformer without region supervision?", "How fast is it?", history)
    short_title = by_id["fpn"].model_copy(update={"title": "Pyramid Nets"})  # two plain words: named in full only
    assert keeps_subject("How fast are pyramid nets?", "How fast is it?", history, [short_title])
    terms = clean_rewrite("How fast is the model?", "How fast is it?", history)  # no paper known: the terms
    assert terms.startswith("How fast is the model? (about ") and "supervision" in terms


def test_a_model_rewrite_that_restates_the_answer_is_replaced_by_the_question_and_its_subject(by_id):
    """The rewrite model sometimes copies the previous answer as a statement; answering it answers nothing
    asked, so the follow-up itself is kept, with the paper it is about."""
    history = [("What is ViLT, the transformer without region supervision?", "ViLT [1] is a minimal model.")]
    statement = "ViLT is a minimal vision-and-language model without convolution."
    assert (
        clean_rewrite(statement, "and how fast is it?", history, [by_id["vilt"]]) == "and how fast is it? (about ViLT)"
    )
    assert (
        clean_rewrite("List ViLT's speed-ups", "and its speed-ups?", history, [by_id["vilt"]])
        == "List ViLT's speed-ups"
    )
    assert clean_rewrite(statement, "Its speed, please.", history, [by_id["vilt"]]) == statement  # not asked as one


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("How fast is ViLT?", True),
        ("and what does it do for ResNet-18", True),
        ("Describe its speed", True),
        ("ViLT boosts accuracy to 80%.", False),
        ("The collection covers it.", False),
    ],
)
def test_reads_as_question(text, question):
    assert reads_as_question(text) is question


# --- the answer stage ---------------------------------------------------------------------------------------


@pytest.fixture
def stage_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, backend="extractive")


def test_a_follow_up_is_answered_about_the_previous_answers_paper(papers, by_id, stage_settings, word_embedder):
    """The retriever ranks FPN first for anything; the previous answer cited ViLT, so ViLT leads the sources."""
    retriever = OrderedRetriever([by_id["fpn"], by_id["snr-metric"], by_id["vilt"]])
    first = answer_citing("How does ViLT work?", sources_of([by_id["vilt"]]), [1], "ViLT is minimal [1].")
    answerer = Answerer(EchoGenerator("What does ViLT present?"), word_embedder, stage_settings)
    *_, answer = answerer.stream("And what does it present?", retriever, history=[("How does ViLT work?", first)])
    assert answer.sources[0].paper_id == "vilt"
    assert [citation.paper_id for citation in answer.citations] == ["vilt"]
    no_history = list(answerer.stream("And what does it present?", retriever))[-1]
    assert no_history.sources[0].paper_id == "fpn"  # the same retrieval without the conversation


def test_a_follow_up_naming_another_paper_lets_that_paper_lead(papers, by_id, stage_settings, word_embedder):
    retriever = OrderedRetriever([by_id["fpn"], by_id["snr-metric"]])
    first = answer_citing("How does ViLT work?", sources_of([by_id["vilt"]]), [1], "ViLT is minimal [1].")
    answerer = Answerer(EchoGenerator("What about feature pyramids?"), word_embedder, stage_settings)
    *_, answer = answerer.stream(
        "What about Feature Pyramid Networks for Object Detection?", retriever, history=[("q", first)], k=2
    )
    assert [source.paper_id for source in answer.sources] == ["fpn", "vilt"]  # ViLT kept in view, not first


def test_kept_papers_obey_the_filters(papers, by_id, stage_settings, word_embedder):
    retriever = OrderedRetriever([by_id["fpn"], by_id["snr-metric"]])
    first = answer_citing("How does ViLT work?", sources_of([by_id["vilt"]]), [1], "ViLT is minimal [1].")
    answerer = Answerer(EchoGenerator("What does ViLT present?"), word_embedder, stage_settings)
    items = answerer.stream(
        "And what does it present?", retriever, history=[("q", first)], filters=Filters(author="Yuan")
    )
    assert "vilt" not in [source.paper_id for source in list(items)[-1].sources]


def test_no_history_turns_means_no_papers_kept(papers, by_id, tmp_path, word_embedder):
    settings = Settings(data_dir=tmp_path, backend="extractive", history_turns=0)
    retriever = OrderedRetriever([by_id["fpn"], by_id["snr-metric"]])
    first = answer_citing("How does ViLT work?", sources_of([by_id["vilt"]]), [1], "ViLT is minimal [1].")
    answer = list(
        Answerer(EchoGenerator(), word_embedder, settings).stream("And it?", retriever, history=[("q", first)])
    )
    assert answer[-1].sources[0].paper_id == "fpn"


def test_bot_follow_up_with_answer_history_stays_on_the_paper(settings, papers):
    from rag import Bot

    bot = Bot(settings)
    bot.index.ingest(papers)
    first = bot.ask("Which model processes visual inputs without convolution?")
    assert first.citations and first.citations[0].paper_id == "vilt", first.text
    follow_up = bot.ask(
        "And how fast is it compared with feature pyramids on a GPU?", history=[(first.question, first)]
    )
    assert follow_up.sources[0].paper_id == "vilt"
    assert "ViLT" in (follow_up.standalone_question or "")
    as_text = bot.ask(
        "And how fast is it compared with feature pyramids on a GPU?", history=[(first.question, first.text)]
    )
    assert as_text.sources[0].paper_id == "vilt"
