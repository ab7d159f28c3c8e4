"""Answers read off a paper's record: who wrote it, and where and when it was presented.

Authors and schedules are structured fields of `Paper`, and the 1.5B model copies them badly: it names the
first of six authors, leaves out the day of a "Thu 21 July, 13:55 - 14:00" slot, or declines although its
source shows the slot. So when a question asks for them, the answer stage appends
them as sentences composed in code from the record of the paper the answer is about, each with its [n]. They
are exact by construction and as checkable as the rest: the same fields are in the source the user opens.

Which paper the answer is about, in this order: a paper whose time slot the question gives ("Which talk had
the 13:05 slot?"), a paper the question names by title or short name ("When was the XNet paper presented?"),
then the papers the verified answer cites. A question that names no paper and whose answer cites none gets
nothing added, so an unanswerable question stays declined, and a paper without the asked field (no authors on
a listing page) adds nothing either.

The record as sentences ("XNet was written by ...", "XNet was presented as a talk in the session ...",
`authors_sentence`, `schedule_sentence`, `paper_sentences`) is also what a claim about it is checked against
(`rag.evidence`), and what ingest embeds ahead of time; this module imports nothing of the answer stage.

A paper's name is part of its record too: when the answer names a paper by its title and the abstract coins a
name for the method ("a new attribution method called Path Scores"), the name is added after the
title (`with_method_names`), since researchers ask for and remember papers by those names.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence

from rag.corpus import coined_names
from rag.injection import looks_like_instruction, safe_sentences
from rag.markers import with_citations
from rag.text import as_words, clock_times, short_name, slot_end, slot_start, start_minute
from rag.types import Paper, SentenceCheck, Source

AUTHORS, MODERATOR, ROOM, SESSION, TIME, TITLE = "authors", "moderator", "room", "session", "time", "title"
SCHEDULE_FIELDS = frozenset({MODERATOR, ROOM, SESSION, TIME})

_ASKS = {
    AUTHORS: re.compile(
        r"\bwho\b[^?]*\b(?:wrote|write|written|authored|co-?authored|authors?)\b|\bauthors? of\b"
        r"|\bwhose (?:paper|work|names?)\b|\bauthor list\b|\bwho (?:is|are|was|were) behind\b"
        r"|\b(?:which|what) (?:researchers|people|authors|team|group)\b|\b(?:researchers|people|team) behind\b"
    ),
    MODERATOR: re.compile(r"\bwho (?:moderated|chaired|was the moderator|is the moderator)\b|\bwhich moderator\b"),
    ROOM: re.compile(r"\b(?:which|what) room\b|\bwhere was\b[^?]*\b(?:presented|held|given)\b"),
    SESSION: re.compile(r"\b(?:which|what) session\b"),
    TIME: re.compile(
        r"\bwhen (?:\w+ )?(?:was|were|is|are|did)\b[^?]*\b(?:present|schedul|held|given|talk)"
        r"|\bwhat time\b|\b(?:which|what) (?:day|date|time|slot)\b|\bwhen (?:is|was|are|were)\b[^?]{0,40}\bon\s*\?"
    ),
}


def header_sentences(paper: Paper) -> list[str]:
    """A paper's title, authors and schedule as sentences (the record a claim about them is checked against),
    without any that read like instructions to a model."""
    lines = [paper.title, authors_sentence(paper), schedule_sentence(paper)]
    return [line for line in lines if line.strip() and not looks_like_instruction(line)]


def paper_sentences(paper: Paper, passage: str = "") -> list[str]:
    """The sentences a paper can back a claim with: its record (`header_sentences`), then its abstract's (else
    `passage`'s) sentences without injected instructions. Ingest embeds them ahead of time; verification
    (`rag.evidence`) reads the same list."""
    return header_sentences(paper) + safe_sentences(paper.abstract or passage)


def authors_sentence(paper: Paper, name: str | None = None) -> str:
    """Who wrote a paper, as a sentence: "XNet was written by A. One, B. Two, C. Three."; the paper
    is called `name` (default: its short name)."""
    if not paper.authors:
        return ""
    return f"{name or short_name(paper.title)} was written by " + ", ".join(paper.authors) + "."


_WEEKDAYS = dict(zip(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], calendar.day_name, strict=True))


def schedule_sentence(paper: Paper, name: str | None = None) -> str:
    """Where and when a paper was presented, as a sentence a claim can be compared with: "XNet was presented
    as a talk in the session Optimisation 3, moderated by Jane Doe, on Tuesday 20 July, at 7:00 - 7:20 PDT."
    Answers say "was scheduled on Tuesday ...", so a "Day: Tue" label scored below the support threshold for a
    correct claim. (The prompt keeps compact "Session: ...; time: ..." labels instead, see
    `rag.context.format_source`: there every token costs prefill.)"""
    parts = []
    if paper.session:
        parts.append(f"in the session {paper.session}")
    if paper.moderator:
        parts.append(f"moderated by {paper.moderator}")
    if paper.room:
        parts.append(f"in room {paper.room}")
    if paper.day:
        day = re.sub(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b\.?", lambda match: _WEEKDAYS[match.group(1)], paper.day)
        parts.append(f"on {day}")
    if paper.time_slot:
        parts.append(f"at {paper.time_slot}")
    if paper.year:
        parts.append(f"in {paper.year}")
    if not parts:
        return ""
    return f"{name or short_name(paper.title)} was presented as a talk " + ", ".join(parts) + "."


def asked_fields(question: str) -> set[str]:
    """Which record fields the question asks for ("who wrote", "which room", "who moderated", "when was ...
    presented"). A field the question only mentions ("the session moderated by X") is not asked."""
    return {field for field, pattern in _ASKS.items() if pattern.search(question.lower())}


def names_paper(question: str, paper: Paper) -> bool:
    """True when the question contains the paper's title or its short name ("XNet", "Zeta9"), as whole words."""
    words = as_words(question)
    names = {as_words(paper.title), as_words(short_name(paper.title))}
    return any(len(name.strip()) >= 4 and name in words for name in names)


def names_author(question: str, paper: Paper) -> bool:
    """True when the question names one of the paper's authors: the whole name, or the surname as a capitalised
    word ("Schmidhuber co-wrote one of the talks ..."). A surname shorter than 4 letters is too often a word."""
    words = as_words(question)
    for author in paper.authors:
        if len(as_words(author).strip()) >= 4 and as_words(author) in words:
            return True
        surname = author.split()[-1] if author.split() else ""
        if len(surname) >= 4 and surname[:1].isupper() and re.search(rf"(?<!\w){re.escape(surname)}(?!\w)", question):
            return True
    return False


def gives_slot(question: str, paper: Paper) -> bool:
    """True when the question gives the clock time the paper's slot starts at ("the 13:05 - 13:25 slot")."""
    start = slot_start(paper.time_slot)
    return start is not None and clock_times(start) <= clock_times(question)


def subjects(question: str, sources: Sequence[Source], cited: Sequence[int], limit: int) -> list[Source]:
    """The papers an answer to `question` is about (see the module docstring), at most `limit`. A paper the
    question names counts only when its record holds a field the question asks for: a question asking when
    "the paper about inverting XNet's output" was presented names XNet as its topic, not as its subject. Then
    the papers by an author the question names ("X co-wrote one of the talks; when is it on?"), then those the
    answer cites."""
    by_slot = [source for source in sources if gives_slot(question, source.paper)]
    in_place = [source for source in by_slot if _names_place(question, source.paper)]
    named = [source for source in sources if names_paper(question, source.paper)]
    if asked := asked_fields(question):  # "the paper about inverting XNet's output ...": XNet's paper is a topic
        named = [source for source in named if _values(source.paper, asked)]
    by_author = [source for source in sources if names_author(question, source.paper)] if asked else []
    by_number = {source.number: source for source in sources}
    chosen = in_place or by_slot or named or by_author or [by_number[number] for number in cited if number in by_number]
    return list({source.number: source for source in chosen}.values())[:limit]


def _names_place(question: str, paper: Paper) -> bool:
    words = as_words(question)
    return any(place and as_words(place) in words for place in (paper.session, paper.room))


def record_sentence(source: Source, fields: set[str]) -> str:
    """The asked fields of the source's record as sentences, cited with its [n]; "" when it has none. A
    schedule sentence gives the whole schedule (session, moderator, room, day, time), whichever part was asked."""
    name = f"“{source.paper.title}”"
    parts = []
    if AUTHORS in fields and source.paper.authors:
        parts.append(with_citations(authors_sentence(source.paper, name), [source.number]))
    if fields & (SCHEDULE_FIELDS | {TITLE}) and (schedule := schedule_sentence(source.paper, name)):
        parts.append(with_citations(schedule, [source.number]))
    return " ".join(parts)


def _values(paper: Paper, fields: set[str]) -> list[str]:
    """The record values that answer the asked `fields`."""
    values = {
        AUTHORS: paper.authors,
        MODERATOR: [paper.moderator],
        ROOM: [paper.room],
        SESSION: [paper.session],
        TIME: [slot_start(paper.time_slot), slot_end(paper.time_slot), None if _dates(paper.day or "") else paper.day],
        TITLE: [short_name(paper.title)],
    }
    return [value for field in fields for value in values[field] if value]


_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DATE = re.compile(rf"\b(\d{{1,2}})\s+({_MONTHS})\b|\b({_MONTHS})\s+(\d{{1,2}})\b", re.IGNORECASE)


def _dates(text: str) -> set[tuple[int, str]]:
    """(day of month, month) of every date in `text`: "Tue 20 July" and "July 20" both give (20, "july")."""
    return {(int(day or day2), (month or month2).lower()) for day, month, month2, day2 in _DATE.findall(text or "")}


_NAME = r"[A-Z][\w'’.-]+(?:\s+[A-Z][\w'’.-]+)+"
_MODERATED_BY = re.compile(
    rf"\b(?:moderated|chaired) by\s+({_NAME})|({_NAME})\s+(?:moderated|chaired|was the moderator|is the moderator)\b"
)


def _stated_moderators(text: str) -> set[str]:
    """Names the text says moderated a session ("moderated by Jane Doe", "Jane Doe moderated")."""
    return {as_words(first or second) for first, second in _MODERATED_BY.findall(text)}


def contradicted_fields(question: str, paper: Paper) -> set[str]:
    """Record fields the question states a wrong value for, a premise to correct: "Jane Doe moderated the
    session where XNet was presented, right?" (its moderator is John Roe), "Since it was presented on
    Tuesday 20 July, ..." (it was on 21 July)."""
    fields = set()
    moderators = _stated_moderators(question)
    if moderators and paper.moderator and as_words(paper.moderator) not in moderators:
        fields.add(MODERATOR)
    stated, held = _dates(question), _dates(paper.day or "")
    if stated and held and not stated & held:
        fields.add(TIME)
    return fields


def _already_said(answer_text: str, paper: Paper, fields: set[str]) -> bool:
    """True when the answer states every value of the record's `fields` (a date in any spelling)."""
    said = as_words(answer_text)
    if TIME in fields and _dates(paper.day or "") and not _dates(paper.day or "") & _dates(answer_text):
        return False
    return all(as_words(value) in said for value in _values(paper, fields))


def without_contradictions(checks: Sequence[SentenceCheck], sources: Sequence[Source]) -> list[SentenceCheck]:
    """`checks` with every answer sentence that misstates the record of each paper it cites dropped ("Yes,
    Jane Doe moderated the session where XNet was presented [3]." when [3]'s moderator is John Roe).
    Support scores cannot catch it: the sentence shares its words with a source that says otherwise."""
    by_number = {source.number: source for source in sources}
    return [check.model_copy(update={"dropped": True}) if _misstates(check, by_number) else check for check in checks]


def by_named_author(question: str, checks: Sequence[SentenceCheck], sources: Sequence[Source]) -> list[SentenceCheck]:
    """`checks` without the model's sentences about other papers when a record question names an author of a
    retrieved paper ("X co-wrote one of the talks: which is it, and when is it on?"): the question asks about
    that author's papers, and a sentence citing none of them, whatever it says of another paper, answers
    nothing asked."""
    theirs = {source.number for source in sources if names_author(question, source.paper)}
    if not theirs or not asked_fields(question):
        return list(checks)
    return [
        check.model_copy(update={"dropped": True})
        if not check.dropped and not check.composed and check.citations and not theirs & set(check.citations)
        else check
        for check in checks
    ]


def _misstates(check: SentenceCheck, by_number: dict[int, Source]) -> bool:
    cited = [by_number[number].paper for number in check.citations if number in by_number]
    return bool(cited) and not check.dropped and all(contradicted_fields(check.text, paper) for paper in cited)


_AFTER = re.compile(r"\b(?:after|next|following|followed)\b", re.IGNORECASE)
_BEFORE = re.compile(r"\b(?:before|previous|preceding|earlier)\b", re.IGNORECASE)
_ASKS_TALK = re.compile(r"\b(?:which|what) (?:paper|talk|work|presentation)\b", re.IGNORECASE)


def adjacent_talk(question: str, sources: Sequence[Source]) -> tuple[Source, Source, str] | None:
    """For "Which paper was presented right after XNet?": (the named talk, the nearest retrieved talk of its
    session in the asked direction, "after" or "before"), or None. The retriever ranks session-mates nearest
    in time first (`rag.retrieve.schedule_neighbours`), so the adjacent talk is among the sources."""
    after, before = bool(_AFTER.search(question)), bool(_BEFORE.search(question))
    if after == before or not _ASKS_TALK.search(question):
        return None
    anchors = [s for s in sources if names_paper(question, s.paper) and start_minute(s.paper.time_slot) is not None]
    if not anchors or not anchors[0].paper.session:
        return None
    anchor, start = anchors[0], start_minute(anchors[0].paper.time_slot)
    place = (anchor.paper.session, anchor.paper.day, anchor.paper.room)
    mates = [
        (abs(minute - start), source)
        for source in sources
        if (source.paper.session, source.paper.day, source.paper.room) == place
        and (minute := start_minute(source.paper.time_slot)) is not None
        and (minute > start if after else minute < start)
    ]
    if not mates:
        return None
    return anchor, min(mates, key=lambda pair: pair[0])[1], "after" if after else "before"


def order_check(adjacent: tuple[Source, Source, str]) -> SentenceCheck:
    """The composed sentence for `adjacent_talk`: both slots, so the order can be checked at a glance."""
    anchor, neighbour, direction = adjacent
    text = (
        f"“{neighbour.title}” was presented {direction} {short_name(anchor.title)} in the same session, at "
        f"{neighbour.paper.time_slot} ({short_name(anchor.title)}: {anchor.paper.time_slot})"
    )
    numbers = sorted([neighbour.number, anchor.number])
    return SentenceCheck(
        text=with_citations(text + ".", numbers),
        citations=numbers,
        support=1.0,
        supported=True,
        added_citations=numbers,
        composed=True,
    )


def without_wrong_order(checks: Sequence[SentenceCheck], adjacent: tuple[Source, Source, str]) -> list[SentenceCheck]:
    """`checks` with every sentence that places another talk before/after the named one dropped ("The paper
    presented right after XNet is “Title A” [2]." when the schedule puts “Title B” there)."""
    anchor, neighbour, _ = adjacent
    allowed = {anchor.number, neighbour.number}

    def wrong(check: SentenceCheck) -> bool:
        ordered = _AFTER.search(check.text) or _BEFORE.search(check.text)
        return bool(ordered and check.citations and not set(check.citations) & allowed)

    return [check.model_copy(update={"dropped": True}) if wrong(check) else check for check in checks]


def complete_from_records(
    question: str, sources: Sequence[Source], checks: Sequence[SentenceCheck], limit: int
) -> list[SentenceCheck]:
    """The verified answer's `checks` with the sentences that misstate a record dropped, then the composed
    record sentences the answer lacks appended (at most `limit` papers, plus the adjacent talk when asked).

    The papers the answer is about are those its kept sentences cite; when the judge removed every claim (as
    contradicted, or as a figure its abstract does not address), those it cited: a sentence that gives a talk the
    wrong date is wrong about that talk, and its record holds the right one."""
    checks = without_contradictions(checks, sources)
    checks = by_named_author(question, checks, sources)
    adjacent = adjacent_talk(question, sources)
    if adjacent:
        checks = without_wrong_order(checks, adjacent)
    kept = [check for check in checks if not check.dropped]
    said = " ".join(check.text for check in kept)
    cited = [number for check in kept if check.supported for number in check.citations]
    if not cited:  # the judge removed the answer's claims: they still spoke of the paper they cite
        cited = [c.citations[0] for c in checks if c.dropped and c.verdict in _JUDGED_OUT and c.citations]
    records = record_checks(question, sources, said, cited, limit)
    if adjacent and adjacent[1].number not in cited:
        records.append(order_check(adjacent))
    return [*checks, *records]


_JUDGED_OUT = ("contradicted", "not_addressed")
"""Verdicts with which the judge removes an answer sentence (`Answerer.judged`)."""


def record_checks(
    question: str, sources: Sequence[Source], answer_text: str, cited: Sequence[int], limit: int
) -> list[SentenceCheck]:
    """Record sentences to append to an answer: one per subject paper whose asked fields the answer (its
    verified `answer_text`, citing `cited`) does not already state in full."""
    asked = asked_fields(question)
    checks = []
    for source in subjects(question, sources, cited, limit):
        wanted = asked | contradicted_fields(question, source.paper)
        wanted |= {TITLE} if gives_slot(question, source.paper) else set()
        sentence = record_sentence(source, wanted)
        if sentence and not _already_said(answer_text, source.paper, wanted):
            checks.append(
                SentenceCheck(
                    text=sentence,
                    citations=[source.number],
                    support=1.0,
                    supported=True,
                    added_citations=[source.number],
                    composed=True,
                )
            )
    return checks


def with_method_names(checks: Sequence[SentenceCheck], sources: Sequence[Source]) -> list[SentenceCheck]:
    """`checks` with each cited paper's coined name (`corpus.coined_names`) added in brackets after the first
    place an answer sentence writes its title: "“A Long Descriptive Paper Title” (XNet) [1]
    ...". Nothing is added for a paper whose name the answer or its title already holds (then the abstract's
    other coined names are its parts: "XNet: ..." coins XNet and the modules "ABF" and "CDF"), nor a name another
    source's abstract uses too ("we propose a novel generative adversarial network (GAN)" coins nothing)."""
    papers = {source.number: source.paper for source in sources}

    def own(name: str, number: int) -> bool:
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        return not any(pattern.search(paper.abstract) for other, paper in papers.items() if other != number)

    said = " ".join(check.text for check in checks if not check.dropped).lower()
    done: set[int] = set()
    named: list[SentenceCheck] = []
    for check in checks:
        text = check.text
        for number in check.citations if not check.dropped else []:
            paper = papers.get(number)
            if paper is None or number in done:
                continue
            coined = coined_names(paper.abstract)
            in_title = any(name.lower() in paper.title.lower() for name in coined)  # the title names the paper
            names = [] if in_title else [name for name in coined if own(name, number)]
            start = text.lower().find(paper.title.lower())
            if not names or any(name.lower() in said for name in names):
                done.add(number)
            elif start >= 0:
                end = start + len(paper.title) + (text[start + len(paper.title) :].startswith("”"))
                text = f"{text[:end]} ({names[0]}){text[end:]}"
                done.add(number)
        named.append(check if text == check.text else check.model_copy(update={"text": text}))
    return named
