"""Checks that the evaluation question set is well-formed and true to the bundled corpus.

The set decides what the team optimises, so a wrong gold title or a fact the abstract never states would
silently reward the wrong behaviour. Every gold title must be an exact title of the parsed corpus, and every
`must_include` group must be satisfiable from the gold papers' own text (title, abstract, authors, session
metadata), case-insensitively, by at least one of its alternatives.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from rag.corpus import load_corpus
from rag.settings import BUNDLED_CORPUS_DIR
from rag.types import Paper

QUESTIONS_PATH = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"

REQUIRED_KEYS = {"id", "type", "question", "gold_titles", "must_include", "notes"}
OPTIONAL_KEYS = {"smoke"}
TYPE_FLOORS = {
    "known_item": 25,
    "detail": 30,
    "multi": 20,
    "author_meta": 20,
    "unanswerable": 20,
    "adversarial": 15,
}
MIN_TOTAL = 130
SMOKE_RANGE = (10, 16)
# A known-item question describes a paper without naming it: at most this share of its content words may
# come from the gold title (measured, the set's maximum is well below; this guards against copy-paste).
MAX_KNOWN_ITEM_TITLE_OVERLAP = 0.34
_STOPWORD_TEXT = """
a an and are as at be by can does for from has have how in into is it its of on or that the their then there
this to using via what when where which while who whose why with without paper papers work study method model
models network networks
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _load_questions() -> list[dict]:
    lines = QUESTIONS_PATH.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


QUESTIONS = _load_questions()


@pytest.fixture(scope="module")
def papers_by_title() -> dict[str, Paper]:
    return {paper.title: paper for paper in load_corpus([BUNDLED_CORPUS_DIR]).papers}


def _normalise(text: str) -> str:
    """Harness matching rule (eval/metrics.py): NFKC, casefold, whitespace collapsed, punctuation kept."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _paper_text(paper: Paper) -> str:
    """Everything a grounded answer could quote: the same fields the index and the prompt see."""
    fields = [paper.title, paper.abstract, *paper.authors]
    fields += [paper.session, paper.room, paper.moderator, paper.day, paper.time_slot]
    return _normalise("\n".join(value for value in fields if value))


def _group_found(group: list[str], text: str) -> bool:
    return any(_normalise(alternative) in text for alternative in group)


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {word for word in words if len(word) > 2 and word not in STOPWORDS}


def _ids(question: dict) -> str:
    return question["id"]


def test_every_line_has_exactly_the_schema_keys_with_the_right_types():
    for question in QUESTIONS:
        keys = set(question)
        assert REQUIRED_KEYS <= keys <= REQUIRED_KEYS | OPTIONAL_KEYS, question["id"]
        assert isinstance(question["question"], str) and question["question"].strip()
        assert isinstance(question["notes"], str) and question["notes"].strip()
        assert isinstance(question["gold_titles"], list)
        assert all(isinstance(title, str) and title for title in question["gold_titles"])
        assert isinstance(question["must_include"], list)
        for group in question["must_include"]:
            assert isinstance(group, list) and group, f"{question['id']}: empty must_include group"
            assert all(isinstance(alt, str) and alt.strip() for alt in group), question["id"]
        if "smoke" in question:
            assert question["smoke"] is True, question["id"]


def test_ids_are_unique_and_sequential():
    ids = [question["id"] for question in QUESTIONS]
    assert len(ids) == len(set(ids))
    assert ids == [f"q{index:03d}" for index in range(1, len(ids) + 1)]


def test_type_counts_meet_the_floors():
    counts = Counter(question["type"] for question in QUESTIONS)
    assert set(counts) == set(TYPE_FLOORS), counts
    for question_type, floor in TYPE_FLOORS.items():
        assert counts[question_type] >= floor, (question_type, counts[question_type])
    assert len(QUESTIONS) >= MIN_TOTAL


def test_questions_are_not_duplicated():
    texts = [" ".join(question["question"].lower().split()) for question in QUESTIONS]
    assert len(texts) == len(set(texts))


def test_unanswerable_questions_have_no_gold_and_no_required_facts():
    for question in QUESTIONS:
        if question["type"] == "unanswerable":
            assert question["gold_titles"] == [] and question["must_include"] == [], question["id"]
        else:
            assert question["gold_titles"], f"{question['id']}: answerable question without gold"
            assert question["must_include"], f"{question['id']}: answerable question without facts"


def test_multi_questions_need_at_least_two_papers_and_one_group_each():
    for question in QUESTIONS:
        if question["type"] == "multi":
            gold = question["gold_titles"]
            assert 2 <= len(gold) <= 4, question["id"]
            assert len(question["must_include"]) >= len(gold), question["id"]


def test_smoke_subset_is_small_and_covers_every_type():
    smoke = [question for question in QUESTIONS if question.get("smoke")]
    assert SMOKE_RANGE[0] <= len(smoke) <= SMOKE_RANGE[1]
    assert {question["type"] for question in smoke} == set(TYPE_FLOORS)


@pytest.mark.parametrize("question", QUESTIONS, ids=_ids)
def test_gold_titles_are_exact_corpus_titles(question, papers_by_title):
    missing = [title for title in question["gold_titles"] if title not in papers_by_title]
    assert not missing, f"{question['id']}: not a corpus title: {missing}"
    assert len(set(question["gold_titles"])) == len(question["gold_titles"]), question["id"]


def test_alternatives_survive_the_harness_normalisation():
    """Leading/trailing spaces are stripped by the harness, so ' Lion' would silently become 'lion'."""
    for question in QUESTIONS:
        for group in question["must_include"]:
            for alternative in group:
                assert alternative == alternative.strip(), (question["id"], alternative)
                assert len(_normalise(alternative)) >= 2, (question["id"], alternative)


@pytest.mark.parametrize("question", [q for q in QUESTIONS if q["gold_titles"]], ids=_ids)
def test_every_required_fact_appears_in_the_gold_papers(question, papers_by_title):
    gold = [papers_by_title.get(title) for title in question["gold_titles"]]
    assert all(gold), f"{question['id']}: a gold title is not in the corpus"
    gold_text = "\n".join(_paper_text(paper) for paper in gold)
    for group in question["must_include"]:
        assert _group_found(group, gold_text), f"{question['id']}: no alternative of {group} in gold papers"


@pytest.mark.parametrize("question", [q for q in QUESTIONS if q["type"] == "multi"], ids=_ids)
def test_each_multi_gold_paper_contributes_a_required_fact(question, papers_by_title):
    """A multi question must need every listed paper: some group is satisfied by that paper's text."""
    for title in question["gold_titles"]:
        text = _paper_text(papers_by_title[title])
        assert any(_group_found(group, text) for group in question["must_include"]), (question["id"], title)


@pytest.mark.parametrize("question", [q for q in QUESTIONS if q["type"] == "known_item"], ids=_ids)
def test_known_item_questions_paraphrase_rather_than_quote_the_title(question):
    words = _content_words(question["question"])
    title_words = _content_words(question["gold_titles"][0])
    overlap = len(words & title_words) / max(len(words), 1)
    assert overlap <= MAX_KNOWN_ITEM_TITLE_OVERLAP, (question["id"], sorted(words & title_words))


FRESH_PATH = QUESTIONS_PATH.with_name("questions_fresh.jsonl")


def test_the_fresh_set_is_well_formed(papers_by_title):
    """The 60 questions written in session 21 from the corpus alone (eval/QUESTIONS.md): every gold title is a
    corpus title, ids are unique, a conversation scores its last turn, and an unanswerable question needs
    nothing."""
    fresh = [json.loads(line) for line in FRESH_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(fresh) == 60 and len({question["id"] for question in fresh}) == 60
    for question in fresh:
        assert all(title in papers_by_title for title in question["gold_titles"]), question["id"]
        assert not question.get("turns") or question["turns"][-1] == question["question"], question["id"]
        if question["type"] == "unanswerable":
            assert not question["gold_titles"] and not question["must_include"], question["id"]
