"""A several-part question's unanswered part is found and asked again alone (`rag.parts`)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.answer import Answerer
from rag.evidence import Evidence
from rag.parts import (
    compared_papers,
    crossed_comparisons,
    part_terms,
    superseded,
    unanswered_parts,
    uncovered_papers,
    without_echo,
)
from rag.prompts import DECLINE_TEXT
from rag.settings import Settings
from rag.text import key_terms
from rag.types import Paper, SentenceCheck
from tests.test_answer import FakeGenerator, FakeRetriever, run
from tests.test_judge import ScriptedJudge


@pytest.mark.parametrize(
    ("question", "sentences", "missing"),
    [
        (  # the second part asks about something no sentence names
            "Up to how many sub-models can XNet train at once, and how much of the performance do they keep?",
            ["XNet can train up to 160 sub-models at once [1]."],
            ["how much of the performance do they keep"],
        ),
        (  # the first part is left out; terms both parts share ("learning") do not answer either
            "Which simple model beat the complex continual learning methods, and by how much accuracy after "
            "learning 600 classes?",
            ["It raised accuracy by 22% after learning 600 classes [1]."],
            ["Which simple model beat the complex continual learning methods"],
        ),
        (  # both parts answered
            "What AP does the detector get on the test split, and how many parameters does it use?",
            ["The detector gets 55.1 AP on the test split with 77M parameters [1]."],
            [],
        ),
        (  # a counting part is answered only by a sentence that states a quantity
            "What does XNet replace, and how many parameters does it save?",
            ["XNet replaces the decoder and saves parameters [1]."],
            ["how many parameters does it save"],
        ),
        ("What does XNet replace?", ["XNet replaces the decoder [1]."], []),  # one part
        ("What does XNet replace, and why?", [], []),  # nothing answered: nothing to complete
    ],
)
def test_unanswered_parts(question, sentences, missing):
    assert unanswered_parts(question, sentences) == missing


def test_title_words_answer_no_part():
    """An answer names its paper whichever part it answers, so the paper's title words are no part's own."""
    parts = ["what does the pyramid network build", "how fast does the pyramid network run"]
    assert part_terms(parts, key_terms("Feature Pyramid Networks")) == [{"build"}, {"fast", "run"}]


QUESTION = "What do feature pyramids detect, and how fast does FPN run on a GPU?"
REPLIES = ("Feature pyramids detect objects at different scales [1].", "FPN runs at 5 FPS on a GPU [1].")


@pytest.mark.parametrize("enabled", [True, False])
def test_a_missing_part_is_asked_alone_and_added(enabled, papers, tmp_path, word_embedder):
    generator = FakeGenerator(*REPLIES)
    settings = Settings(data_dir=tmp_path, answer_missing_parts=int(enabled), answer_sources=1)
    answerer = Answerer(generator, word_embedder, settings, judge=ScriptedJudge(bad="never said"))
    _, answer = run(answerer, QUESTION, FakeRetriever([papers[2]]))
    assert ("5 FPS" in answer.text) is enabled
    assert len(generator.requests) == 1 + enabled
    if enabled:
        prompt = generator.requests[1].messages[-1]["content"]
        assert "how fast does FPN run on a GPU" in prompt and "FPN runs at 5 FPS" in prompt


def test_a_part_reply_the_judge_rejects_is_not_added(papers, tmp_path, word_embedder):
    generator = FakeGenerator(*REPLIES)
    settings = Settings(data_dir=tmp_path, answer_sources=1)
    answerer = Answerer(generator, word_embedder, settings, judge=ScriptedJudge(bad="FPS"))
    _, answer = run(answerer, QUESTION, FakeRetriever([papers[2]]))
    assert "5 FPS" not in answer.text and not answer.declined


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "In the X paper, which simple model beat the complex methods, a prototypical network did [1].",
            "A prototypical network did [1].",
        ),
        (
            "A prototypical network beat the complex methods [1].",
            "A prototypical network beat the complex methods [1].",
        ),
        ("In the X paper, a prototypical network did [1].", "In the X paper, a prototypical network did [1]."),
    ],
)
def test_a_reply_that_opens_by_copying_its_part_loses_the_copy(reply, expected):
    assert without_echo(reply, "In the X paper, which simple model beat the complex methods") == expected


def test_a_follow_up_is_split_into_parts_as_asked_not_as_rewritten(papers, tmp_path, word_embedder):
    """The rewrite of a follow-up into one standalone question may merge its parts; the parts are read from the
    question as asked, and the part prompt carries the standalone question for context."""
    rewrite = "What do Feature Pyramid Networks detect, including their GPU speed?"
    generator = FakeGenerator(rewrite, *REPLIES)
    settings = Settings(data_dir=tmp_path, answer_sources=1)
    answerer = Answerer(generator, word_embedder, settings, judge=ScriptedJudge(bad="never said"))
    history = [("Which paper builds feature pyramids?", "Feature Pyramid Networks build them [1].")]
    question = "what do they detect, and how fast do they run on a GPU?"
    _, answer = run(answerer, question, FakeRetriever([papers[2]]), history=history)
    assert answer.standalone_question == rewrite and "5 FPS" in answer.text
    prompt = generator.requests[-1].messages[-1]["content"]
    assert rewrite in prompt and "how fast do they run on a GPU" in prompt


def test_a_reply_that_repeats_a_kept_sentence_and_adds_to_it_stands_in_its_place():
    kept = SentenceCheck(text="XNet can train up to 160 sub-models at once [1].", citations=[1], supported=True)
    other = SentenceCheck(text="XNet is fast [1].", citations=[1], supported=True)
    reply = "XNet can train up to 160 sub-models at once, keeping 96% of the performance [1]."
    assert [check.dropped for check in superseded([kept, other], [reply])] == [True, False]
    assert [check.dropped for check in superseded([kept, other], ["XNet keeps 96% of it [1]."])] == [False, False]


# --- papers compared by name ----------------------------------------------------------------------------------


def _evidence(*titles: str, names: tuple[str, ...] = ()) -> dict[int, Evidence]:
    return {
        number: Evidence(number, [title], np.zeros((1, 2)), set(), set(), names=names if number == 1 else ())
        for number, title in enumerate(titles, start=1)
    }


TITLES = ("XNet: Sparse Routing for Detection", "Zeta: Dense Caching for Parsing", "Other Work on Parsing")


@pytest.mark.parametrize(
    ("question", "compared"),
    [
        ("How do XNet and Zeta differ in what they cache?", {1: "XNet", 2: "Zeta"}),
        ("XNet vs. Zeta: which routes sparsely?", {1: "XNet", 2: "Zeta"}),
        ("Zeta, XNet: how does each go about it?", {2: "Zeta", 1: "XNet"}),
        ("How does XNet's cost compare with Zeta?", {}),  # a baseline named apart, not a compared pair
        ("How do XNet and zeta differ?", {}),  # "zeta" in lower case may be an ordinary word
        ("What does XNet route?", {}),
    ],
)
def test_compared_papers_are_names_joined_in_the_question(question, compared):
    found = compared_papers(question, _evidence(*TITLES))
    assert found == compared and list(found) == list(compared)


def test_a_name_the_abstract_coins_counts_as_the_papers_name():
    evidence = _evidence("Sparse Routing for Detection", "Zeta: Dense Caching for Parsing", names=("RouteNet-S",))
    assert compared_papers("RouteNet-S and Zeta both cache; how?", evidence) == {1: "RouteNet-S", 2: "Zeta"}


def test_a_name_the_abstract_introduces_after_propose_counts_too():
    """ "We propose X with Y (X-Y)" coins X-Y, though the strict names (after "called") leave it out."""
    coining = Evidence(
        1,
        ["Better Keys for Transformers", "We propose Transformer with Mixed Keys (Transformer-MK)."],
        np.zeros((2, 2)),
        set(),
        set(),
        abstract_start=1,
    )
    evidence = {1: coining, 2: _evidence(*TITLES)[2]}
    assert compared_papers("Transformer-MK and Zeta both cache; how?", evidence) == {1: "Transformer-MK", 2: "Zeta"}


def test_a_sentence_naming_one_compared_paper_but_citing_the_other_goes():
    compared = {1: "XNet", 2: "Zeta"}
    checks = [
        SentenceCheck(text="XNet routes sparsely [1].", citations=[1], supported=True),
        SentenceCheck(text="Zeta also routes sparsely [1].", citations=[1], supported=True),
        SentenceCheck(text="XNet and Zeta differ in routing [1].", citations=[1], supported=True),
        SentenceCheck(text="Sparse routing is cheap [1].", citations=[1], supported=True),
    ]
    kept = crossed_comparisons(checks, compared)
    assert [check.dropped for check in kept] == [False, True, False, False]
    assert uncovered_papers(kept, compared) == [2]


COMPARED_PAPERS = [
    Paper(
        id="x", title="XNet: Sparse Routing for Detection", abstract="XNet routes detections sparsely through experts."
    ),
    Paper(id="z", title="Zeta: Dense Caching for Parsing", abstract="Zeta caches parse states densely in memory."),
]


@pytest.mark.parametrize("enabled", [True, False])
def test_each_compared_paper_gets_its_own_sentence(enabled, tmp_path, word_embedder):
    """The answer gives both papers' methods to XNet's abstract; Zeta's crossed sentence goes and Zeta is asked
    about alone, over its own abstract."""
    generator = FakeGenerator(
        "XNet routes detections sparsely [1]. Zeta also routes detections sparsely [1].",
        "Zeta caches parse states densely [2].",
    )
    settings = Settings(data_dir=tmp_path, answer_compared_papers=3 if enabled else 0, answer_sources=2)
    answerer = Answerer(generator, word_embedder, settings, judge=ScriptedJudge(bad="never said"))
    _, answer = run(answerer, "How do XNet and Zeta differ in what they do?", FakeRetriever(COMPARED_PAPERS))
    assert "XNet routes detections sparsely [1]" in answer.text
    assert ("Zeta caches parse states densely [2]" in answer.text) is enabled
    assert ("Zeta also routes" in answer.text) is not enabled
    if enabled:
        prompt = generator.requests[1].messages[-1]["content"]
        assert "for Zeta only" in prompt and "Zeta caches parse states densely in memory" in prompt
        assert "XNet routes" not in prompt


def test_a_declined_comparison_is_answered_paper_by_paper(tmp_path, word_embedder):
    generator = FakeGenerator(
        DECLINE_TEXT, "XNet routes detections sparsely [1].", "Zeta caches parse states densely [2]."
    )
    settings = Settings(data_dir=tmp_path, answer_sources=2)
    answerer = Answerer(generator, word_embedder, settings, judge=ScriptedJudge(bad="never said"))
    _, answer = run(answerer, "XNet vs Zeta: how do they work?", FakeRetriever(COMPARED_PAPERS))
    assert not answer.declined
    assert answer.text == "XNet routes detections sparsely [1]. Zeta caches parse states densely [2]."
