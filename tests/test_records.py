"""Record answers (rag/records.py): which fields a question asks, which paper it is about, the composed
sentences, and premises about the schedule that the record contradicts. Pure functions over fixture papers."""

from __future__ import annotations

import pytest

from rag.records import (
    AUTHORS,
    MODERATOR,
    ROOM,
    SESSION,
    TIME,
    adjacent_talk,
    asked_fields,
    by_named_author,
    complete_from_records,
    contradicted_fields,
    gives_slot,
    names_author,
    names_paper,
    record_checks,
    subjects,
    with_method_names,
    without_contradictions,
)
from rag.types import Paper, SentenceCheck, Source


def sources_of(papers: list[Paper]) -> list[Source]:
    return [Source(number=n, paper=paper, score=1.0 / n) for n, paper in enumerate(papers, start=1)]


@pytest.mark.parametrize(
    ("question", "fields"),
    [
        ("Who are the authors of ViLT?", {AUTHORS}),
        ("Who wrote the paper on learning curves?", {AUTHORS}),
        ("Who moderated the session where GLSearch was presented?", {MODERATOR}),
        ("In which room was the Bregman Neural Networks talk held?", {ROOM}),
        ("When was the ViLT talk scheduled?", {TIME}),
        ("When exactly was the ViLT talk scheduled?", {TIME}),
        ("At what time was ViLT presented, and in which session?", {TIME, SESSION}),
        ("Which paper did Massimiliano Pontil co-author, and when was it presented?", {TIME}),
        ("XNet is one of the talks. When is it on?", {TIME}),
        ("When was the paper on graph nets published?", set()),
        ("Which researchers are behind XNet?", {AUTHORS}),
        ("Whose names open and close the author list of the XNet paper?", {AUTHORS}),
        ("Who is behind the XNet measure?", {AUTHORS}),
        # mentioned, not asked
        ("Which two talks in the session moderated by Razvan Pascanu deal with metric learning?", set()),
        ("Which paper did Mohit Bansal co-author?", set()),
        ("Does the method still work when labels are noisy?", set()),
    ],
)
def test_asked_fields(question, fields):
    assert asked_fields(question) == fields


def test_names_paper_by_title_or_short_name(papers):
    vilt, fpn = papers[1], papers[2]
    assert names_paper("Who are the authors of ViLT?", vilt)
    assert names_paper("who wrote feature pyramid networks for object detection", fpn)
    assert not names_paper("Who wrote the vision-and-language transformer paper?", vilt)
    assert not names_paper("Which filter?", Paper(id="x", title="FIL: a filter", abstract="a"))  # too short a name


def test_slot_start_identifies_a_talk(papers):
    vilt = papers[1]  # 7:00 - 7:20 PDT
    assert gives_slot("Which talk had the 7:00 - 7:20 slot?", vilt)
    assert gives_slot("What was presented at 07:00?", vilt)
    assert not gives_slot("Which talk had the 6:40 - 7:00 slot?", vilt)  # 7:00 ends that range


def test_subjects_prefer_slot_then_named_then_cited(papers):
    sources = sources_of(papers)
    assert [s.number for s in subjects("Which talk had the 7:00 slot?", sources, cited=[3], limit=2)] == [2]
    assert [s.number for s in subjects("Who wrote FPN or ViLT?", sources, cited=[3], limit=2)] == [2]
    assert [s.number for s in subjects("Who wrote the pyramid paper?", sources, cited=[3, 1, 3], limit=2)] == [3, 1]
    assert subjects("Who wrote the pyramid paper?", sources, cited=[], limit=2) == []


def test_asked_authors_are_appended_in_full(papers):
    sources = sources_of(papers)
    (check,) = record_checks("Who wrote ViLT?", sources, "ViLT was written by Wonjae Kim [2].", [2], limit=2)
    assert check.text == (
        "“ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision” was written by "
        "Wonjae Kim, Bokyung Son, Ildoo Kim [2]."
    )
    assert check.composed and check.supported and check.citations == [2]


def test_nothing_is_appended_when_the_answer_already_states_it(papers):
    sources = sources_of(papers)
    said = "ViLT was written by Wonjae Kim, Bokyung Son and Ildoo Kim [2]."
    assert record_checks("Who wrote ViLT?", sources, said, [2], limit=2) == []
    said = "It was moderated by Razvan Pascanu [2]."
    assert record_checks("Who moderated the session where ViLT was presented?", sources, said, [2], 2) == []


def test_schedule_record_names_day_and_slot(papers):
    sources = sources_of(papers)
    (check,) = record_checks("When was ViLT presented?", sources, "", [], limit=2)
    assert "Tuesday 20 July" in check.text and "7:00 - 7:20 PDT" in check.text and check.text.endswith("[2].")
    said = "ViLT was presented on July 20 at 7:00 - 7:20 [2]."  # another spelling of the same day and slot
    assert record_checks("When was ViLT presented?", sources, said, [2], limit=2) == []


def test_a_slot_given_by_its_start_only_gets_the_whole_slot(papers):
    """A talk's time is a slot: an answer that gives when it starts but not when it ends is incomplete."""
    sources = sources_of(papers)
    said = "ViLT was presented on July 20 at 7:00 [2]."
    (check,) = record_checks("When exactly was ViLT presented?", sources, said, [2], limit=2)
    assert "7:00 - 7:20 PDT" in check.text


def test_a_paper_without_the_field_adds_nothing(papers):
    sources = sources_of(papers)  # FPN has no authors and no schedule
    assert record_checks("Who wrote Feature Pyramid Networks for Object Detection?", sources, "", [], 2) == []
    assert record_checks("When was FPN for Object Detection presented?", sources, "", [3], 2) == []


def test_wrong_premises_about_the_schedule_are_found(papers):
    vilt = papers[1]
    question = "Guojun Zhang moderated the session where ViLT was presented, right? Which session was that?"
    assert contradicted_fields(question, vilt) == {MODERATOR}
    assert contradicted_fields("Since ViLT was presented on Thursday 21 July, which room?", vilt) == {TIME}
    assert contradicted_fields("ViLT was presented on 20 July, moderated by Razvan Pascanu.", vilt) == set()
    assert contradicted_fields("It was moderated by the same person.", vilt) == set()
    (check,) = record_checks(question, sources_of(papers), "The session was Deep Learning Algorithms 3 [2].", [2], 2)
    assert "moderated by Razvan Pascanu" in check.text


def test_sentences_that_misstate_the_record_are_dropped(papers):
    sources = sources_of(papers)
    checks = [
        SentenceCheck(text="Yes, Guojun Zhang moderated the session where ViLT was presented [2].", citations=[2]),
        SentenceCheck(text="ViLT was presented in a session moderated by Razvan Pascanu [2].", citations=[2]),
        SentenceCheck(text="Guojun Zhang moderated the FPN talk [3].", citations=[3]),  # FPN has no record
    ]
    kept = without_contradictions(checks, sources)
    assert [check.dropped for check in kept] == [True, False, False]


def session_of_three() -> list[Source]:
    """Three talks of one session (7:00, 7:20, 7:40) and one of another session at 7:20."""

    def talk(paper_id: str, title: str, slot: str, session: str = "Deep Learning Algorithms 3") -> Paper:
        return Paper(id=paper_id, title=title, abstract="a.", session=session, day="Tue 20 July", time_slot=slot)

    return sources_of(
        [
            talk("vilt", "ViLT: Vision-and-Language Transformer", "7:00 - 7:20 PDT"),
            talk("other", "Elsewhere: A Talk in Another Session", "7:20 - 7:40 PDT", session="Theory"),
            talk("curves", "Learning Curves for Analysis of Deep Networks", "7:20 - 7:40 PDT"),
            talk("late", "Later Work on Things", "7:40 - 8:00 PDT"),
        ]
    )


def test_adjacent_talk_is_the_nearest_session_mate_in_the_asked_direction():
    sources = session_of_three()
    anchor, neighbour, direction = adjacent_talk("Which paper was presented right after ViLT?", sources)
    assert (anchor.paper.id, neighbour.paper.id, direction) == ("vilt", "curves", "after")
    assert adjacent_talk("Which talk came before ViLT?", sources) is None  # the first talk of its session
    assert adjacent_talk("Is ViLT faster after pre-training?", sources) is None  # asks for no talk


def test_a_wrong_order_claim_is_replaced_by_the_schedule():
    sources = session_of_three()
    model = [
        SentenceCheck(text="The talk right after ViLT is Later Work on Things [4].", citations=[4], supported=True),
        SentenceCheck(text="ViLT was presented at 7:00 [1].", citations=[1], supported=True),
    ]
    checks = complete_from_records("Which paper was presented right after ViLT?", sources, model, limit=2)
    assert [check.dropped for check in checks] == [True, False, False]
    assert checks[-1].text == (
        "“Learning Curves for Analysis of Deep Networks” was presented after ViLT in the same session, at "
        "7:20 - 7:40 PDT (ViLT: 7:00 - 7:20 PDT) [1][3]."
    )
    assert checks[-1].composed


def test_a_slot_finds_its_talk_among_all_retrieved_papers():
    checks = complete_from_records("Which talk had the 7:40 - 8:00 slot?", session_of_three(), [], limit=2)
    assert [check.citations for check in checks] == [[4]]
    assert checks[0].text.startswith("“Later Work on Things” was presented as a talk in the session")


def test_a_paper_named_by_its_title_gets_the_name_its_abstract_coins(papers):
    attribution = Paper(
        id="ig",
        title="Axiomatic Attribution for Deep Networks",
        abstract="We use the axioms to guide the design of a new attribution method called Integrated Gradients.",
    )
    sources = sources_of([attribution, papers[2]])
    checks = [
        SentenceCheck(text="Feature Pyramid Networks for Object Detection builds pyramids [2].", citations=[2]),
        SentenceCheck(text="“Axiomatic Attribution for Deep Networks” [1] states two axioms.", citations=[1]),
        SentenceCheck(text="Axiomatic Attribution for Deep Networks derives a method [1].", citations=[1]),
    ]
    named = with_method_names(checks, sources)
    assert named[0] == checks[0]  # the FPN fixture abstract coins no name
    assert named[1].text == "“Axiomatic Attribution for Deep Networks” (Integrated Gradients) [1] states two axioms."
    assert named[2] == checks[2]  # named once

    said = [checks[0].model_copy(update={"text": "Integrated Gradients attributes outputs [1].", "citations": [1]})]
    assert with_method_names([*said, *checks[1:]], sources)[1:] == checks[1:]  # the answer already uses the name

    user = Paper(id="user", title="Another paper", abstract="We compare with Integrated Gradients on images.")
    assert with_method_names(checks, [*sources, *sources_of([user, user, user])[2:]]) == checks  # not its own name


def test_a_title_that_holds_its_name_gets_none_of_the_abstracts_part_names():
    paper = Paper(
        id="xnet",
        title="XNet: Fast Segmentation via Crossed Refinement",
        abstract="We propose crossed refinement (XNet). Specifically, we introduce the Attention Fusion Block (AFB).",
    )
    checks = [SentenceCheck(text="“XNet: Fast Segmentation via Crossed Refinement” [1] refines masks.", citations=[1])]
    assert with_method_names(checks, sources_of([paper])) == checks


def test_a_record_question_whose_only_claim_the_judge_removed_gets_the_cited_papers_record(papers):
    """The model named the right talk with a wrong date; the judge removed the sentence, and the record gives the
    schedule of the paper it cited. A sentence dropped for another reason names no subject."""
    sources = sources_of(papers)
    question = "When was the paper about vision-and-language transformers presented?"
    said = "It was presented on Monday 19 July [2]."
    contradicted = SentenceCheck(text=said, citations=[2], supported=False, dropped=True, verdict="contradicted")
    *_, check = complete_from_records(question, sources, [contradicted], limit=2)
    assert check.composed and "Tuesday 20 July" in check.text and check.citations == [2]
    unaddressed = contradicted.model_copy(update={"verdict": "not_addressed"})  # a figure its abstract lacks
    *_, check = complete_from_records(question, sources, [unaddressed], limit=2)
    assert check.composed and "Tuesday 20 July" in check.text
    unsupported = contradicted.model_copy(update={"verdict": None})
    assert not any(c.composed for c in complete_from_records(question, sources, [unsupported], limit=2))


def test_a_named_paper_without_the_asked_field_is_a_topic_not_the_subject(papers):
    """Asked when a talk building on a named paper was given, the answer is about the cited talk, since the named
    paper has no schedule; asked who wrote a named paper that lists its authors, it is the subject."""
    sources = sources_of(papers)
    when = "When was the talk building on “Feature Pyramid Networks for Object Detection” presented?"
    assert [s.number for s in subjects(when, sources, cited=[2], limit=2)] == [2]
    who = "Who wrote “ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision”?"
    assert [s.number for s in subjects(who, sources, cited=[3], limit=2)] == [2]


def test_a_paper_by_an_author_the_question_names_is_the_subject(papers):
    """ "Yuan co-wrote one of the talks: when is it on?" is about that author's paper, whichever papers the answer
    cites; a surname in lower case, or too short to be more than a word, names no one."""
    sources = sources_of(papers)  # [1] is by Tongtong Yuan and Weihong Deng; [2] by Wonjae Kim and others
    assert names_author("Yuan co-wrote one of the talks. When is it on?", papers[0])
    assert names_author("When did weihong deng present?", papers[0])  # a whole name, in any case
    assert not names_author("What does the yuan exchange rate do?", papers[0])
    assert not names_author("Kim co-wrote a talk. When is it on?", papers[1])  # 3 letters: too often a word
    when = "Yuan co-wrote one of the talks. When is it on?"
    assert [s.number for s in subjects(when, sources, cited=[3, 2], limit=1)] == [1]
    assert [s.number for s in subjects("What did Yuan propose?", sources, cited=[3], limit=1)] == [3]  # no field asked


def test_a_record_question_naming_an_author_keeps_only_sentences_about_their_papers(papers):
    sources = sources_of(papers)  # [1] is by Tongtong Yuan and Weihong Deng
    theirs = SentenceCheck(text="A robust SNR distance metric is proposed [1].", citations=[1], supported=True)
    other = SentenceCheck(text="ViLT drops convolution [2].", citations=[2], supported=True)
    question = "Yuan co-wrote one of the talks. Which is it, and when is it on?"
    assert [c.dropped for c in by_named_author(question, [theirs, other], sources)] == [False, True]
    topical = "Which papers build on Yuan's distance metric?"  # no record field asked: other papers may answer
    assert [c.dropped for c in by_named_author(topical, [theirs, other], sources)] == [False, False]
