"""Settings grouped by stage: flat and nested names (keywords, environment, `.env`), derived copies, errors, and
the rule that every tunable says what it does and has a range."""

from __future__ import annotations

import os
import types
import typing

import annotated_types
import pytest
from pydantic import ValidationError

from rag.settings import FLAT_NAMES, GROUPS, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No `RAG_*` variable or `.env` file of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_flat_keywords_go_to_their_groups():
    settings = Settings(top_k=3, backend="extractive", ui_port=9001, judge_answers=False, chunk_chars=300)
    assert settings.retrieval.top_k == 3 and settings.generation.backend == "extractive"
    assert settings.ui.port == 9001 and settings.answer.judge_answers is False and settings.index.chunk_chars == 300
    assert Settings().retrieval.top_k == 5  # the others keep their defaults


def test_nested_keywords_and_a_flat_one_on_top():
    settings = Settings(retrieval={"top_k": 4, "mmr_lambda": 0.5}, top_k=2)
    assert settings.retrieval.top_k == 2 and settings.retrieval.mmr_lambda == 0.5


def test_flat_environment_variables(monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "7")
    monkeypatch.setenv("RAG_UI_PORT", "9002")
    monkeypatch.setenv("RAG_JUDGE_BIAS", '{"supported": 0.5}')  # complex values are JSON, as before
    monkeypatch.setenv("RAG_WEAK_SOURCE_MARGIN", "off")
    monkeypatch.setenv("RAG_COLLECTION", "mine")
    settings = Settings()
    assert settings.retrieval.top_k == 7 and settings.ui.port == 9002
    assert settings.answer.judge_bias == {"supported": 0.5} and settings.answer.weak_source_margin is None
    assert settings.collection == "mine"


def test_nested_environment_variables_win_over_flat_ones_and_keywords_over_both(monkeypatch):
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "8")
    monkeypatch.setenv("RAG_ANSWER__JUDGE_ANSWERS", "false")
    monkeypatch.setenv("RAG_UI__PORT", "9003")
    settings = Settings()
    assert settings.retrieval.top_k == 8 and settings.answer.judge_answers is False and settings.ui.port == 9003
    monkeypatch.setenv("RAG_TOP_K", "6")
    assert Settings().retrieval.top_k == 8
    assert Settings(top_k=3).retrieval.top_k == 3
    assert Settings(retrieval={"top_k": 4}).retrieval.top_k == 4


def test_dotenv_file_takes_both_forms_and_the_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("RAG_TOP_K=9\nRAG_GENERATION__BACKEND=extractive\nUNRELATED=1\n")
    settings = Settings()
    assert settings.retrieval.top_k == 9 and settings.generation.backend == "extractive"
    monkeypatch.setenv("RAG_TOP_K", "2")
    assert Settings().retrieval.top_k == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Settings(top_kk=3), "unknown setting 'top_kk'; did you mean 'top_k'?"),
        (lambda: Settings().with_changes(judge_answer=False), "did you mean 'judge_answers'?"),
        (lambda: Settings(retrieval={"top_kk": 3}), "Extra inputs are not permitted"),
        (lambda: Settings(ui_port=0), "greater than or equal to 1"),
        (lambda: Settings().with_changes(top_k=0), "greater than or equal to 1"),
    ],
)
def test_unknown_names_and_values_out_of_range_are_errors(make, message):
    with pytest.raises(ValidationError, match=message):
        make()


def test_with_changes_copies_validates_and_leaves_the_original(monkeypatch):
    settings = Settings(backend="extractive", top_k=3)
    monkeypatch.setenv("RAG_CANDIDATE_CHUNKS", "7")  # set after: the copy keeps the original's values
    changed = settings.with_changes(top_k=2, judge_answers=False, data_dir="/tmp/elsewhere", weak_source_margin=None)
    assert changed.retrieval.top_k == 2 and changed.answer.judge_answers is False
    assert changed.answer.weak_source_margin is None and str(changed.index_dir) == "/tmp/elsewhere/index"
    assert changed.generation.backend == "extractive" and changed.retrieval.candidate_chunks == 50
    assert settings.retrieval.top_k == 3 and settings.answer.judge_answers is True


def test_flat_dump_names_every_field_once_and_builds_the_same_settings():
    settings = Settings(top_k=3, ui_port=9004, backend="extractive")
    flat = settings.flat_dump()
    assert flat["top_k"] == 3 and flat["ui_port"] == 9004 and "retrieval" not in flat and "port" not in flat
    assert len(flat) == len(FLAT_NAMES) + 3  # data_dir, corpus_paths, collection
    assert Settings(**flat) == settings
    assert Settings(**settings.flat_dump(mode="json")) == settings


def _fields():
    yield from ((name, field) for name, field in Settings.model_fields.items())
    for group, model in GROUPS.items():
        yield from ((f"{group}.{name}", field) for name, field in model.model_fields.items())


def _is_number(annotation) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_number(arg) for arg in typing.get_args(annotation))
    return annotation in (int, float)


def test_every_field_has_a_description_and_every_number_a_range():
    bounds = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt)
    for name, field in _fields():
        assert field.description and len(field.description) > 10, f"{name} has no description"
        if _is_number(field.annotation):
            assert any(isinstance(rule, bounds) for rule in field.metadata), f"{name} has no range"
