"""Follow-up questions kept on topic: rewritten to stand alone, and the papers of the previous answer kept in view.

A question that leans on earlier turns (a pronoun, "that paper", a leading "and", or a few words) is
rewritten; a self-contained one is not, since the rewrite costs seconds of generation. The model rewrites
with `CONDENSE_PROMPT`; without a model, or when its rewrite is unusable, the previous turn's subject is put
in front of the follow-up (`heuristic_rewrite`), which is enough for retrieval. A model rewrite that drops
the previous turn's subject gets it appended (`clean_rewrite`): "How much faster is it?" must not become a
question about nothing in particular.

Rewriting alone does not keep a conversation on its paper: the rewritten words can still rank another paper
first, and "and what does it propose?" is then answered about that one. So the papers the previous answer
cited stay in view (`papers_in_view`, `search_in_view`): they are put among the retrieved sources, first
unless the follow-up turns to another paper by name. A history turn's answer is an `Answer` (its citations
say which papers) or plain text (the papers are recovered from the titles and names it writes, else from its
[n] markers over the previous question's retrieval).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from rag.corpus import coined_names
from rag.markers import parse_citations, remove_citations
from rag.prompts import CONDENSE_TURN_TEMPLATE
from rag.retrieve import is_name_like, matches_filters
from rag.text import is_decline, key_terms, normalise_title, short_name, split_sentences
from rag.types import Answer, Filters, History, Paper, Source

HISTORY_ANSWER_SENTENCES = 2
"""Sentences of each earlier answer shown when rewriting a follow-up: enough to name what it was about."""

_REFERRING = re.compile(
    r"\b(?:it|its|they|them|their|theirs|he|she|his|her|him|former|latter)\b"
    r"|\b(?:this|that|these|those|the same|the above|the previous|the first|the second|the last)\s+"
    r"(?:paper|method|model|work|approach|one|study|technique|dataset|author|result|idea|architecture|loss)s?\b"
    r"|\bthe (?:authors?|paper|method|model)\b(?! (?:of|that|which|on|for|about|called|named)\b)",
    re.IGNORECASE,
)
_FOLLOW_UP_START = re.compile(r"^\s*(?:and|also|what about|how about|but|then|same for)\b", re.IGNORECASE)
_TITLE_MIN_WORDS = 3
"""A title this long, written out, names its paper; a shorter one of plain words is also a phrase, and
names its paper only in quotes."""
_QUOTED = re.compile(r"[“\"]([^”\"]{3,300})[”\"]")


# --- what a history turn says -------------------------------------------------------------------------------


def needs_rewrite(question: str, history: History) -> bool:
    """True when `question` leans on earlier turns: a pronoun or "that paper", a leading "and/what about",
    or only a few words. A self-contained question skips the rewrite (it would cost seconds of generation)."""
    if not history:
        return False
    short = len(question.split()) <= 3
    return bool(short or _REFERRING.search(question) or _FOLLOW_UP_START.search(question))


def refers_back(question: str) -> bool:
    """True when `question` points at something said before ("it", "that method", "the authors")."""
    return bool(_REFERRING.search(question))


def turn_text(answer: str | Answer | None) -> str:
    """The text of a history turn's answer, whether it is kept as an `Answer` or as plain text."""
    return answer.text if isinstance(answer, Answer) else (answer or "")


def turn_question(history: History) -> str:
    """The last turn's question as it was answered: its standalone rewrite when the `Answer` kept one, since a
    follow-up of a follow-up ("and its results?") needs the subject the rewrite resolved."""
    question, answer = history[-1]
    if isinstance(answer, Answer) and answer.standalone_question:
        return answer.standalone_question
    return question


def is_declined(answer: str | Answer | None) -> bool:
    """True when the answer says only that the collection does not answer (it is about no paper)."""
    if isinstance(answer, Answer):
        return answer.declined
    sentences = split_sentences(turn_text(answer))
    return not sentences or all(is_decline(sentence) for sentence in sentences)


# --- the papers a text names --------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def _names_of(title: str, abstract: str) -> tuple[str, ...]:
    """The short names a text may call a paper by, as written: the name before its title's colon ("XNet") and
    the one-word names its abstract coins ("XPN"), when they look like names rather than words."""
    short = short_name(title)
    names = [short] if short != title and " " not in short and is_name_like(short) else []
    names += [name for name in coined_names(abstract, strict=True) if " " not in name and is_name_like(name)]
    return tuple(dict.fromkeys(name for name in names if len(name) >= 3))


def paper_names(paper: Paper) -> tuple[str, ...]:
    """Short names of `paper` (`_names_of`), cached: a paper's title and abstract never change."""
    return _names_of(paper.title, paper.abstract)


def subject_name(paper: Paper) -> str:
    """How a question would name `paper`: its short name, else its title."""
    names = paper_names(paper)
    return names[0] if names else paper.title


def papers_named_in(text: str, papers: Sequence[Paper], names: bool = True) -> list[Paper]:
    """The papers of `papers` that `text` names, in the order it first names them.

    A paper is named by its title (written out when it has at least `_TITLE_MIN_WORDS` words, else in
    quotes; case, accents and punctuation do not count) or, with `names`, by a short name only it has, written
    as a whole word with its own capitals ("XNet", not "xnet"): a name two papers share names neither."""
    owners: dict[str, list[Paper]] = {}
    for paper in papers if names else ():
        for name in paper_names(paper):
            owners.setdefault(name, []).append(paper)
    flat = f" {normalise_title(text)} "
    quoted = [f" {normalise_title(match.group(1))} " for match in _QUOTED.finditer(text)]
    found: dict[str, tuple[int, Paper]] = {}
    for paper in papers:
        title = f" {normalise_title(paper.title)} "
        if title.strip() and (len(title.split()) >= _TITLE_MIN_WORDS or title in quoted):
            _note(found, paper, flat.find(title))
    for name, holders in owners.items():
        written = len(holders) == 1 and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
        if written:
            _note(found, holders[0], flat.find(f" {normalise_title(name)} "))
    return [paper for _, paper in sorted(found.values(), key=lambda item: item[0])]


def _note(found: dict[str, tuple[int, Paper]], paper: Paper, position: int) -> None:
    """Record that `paper` is named at `position` (-1: not found), keeping its earliest mention."""
    if position >= 0 and (paper.id not in found or position < found[paper.id][0]):
        found[paper.id] = (position, paper)


# --- the papers in view -------------------------------------------------------------------------------------


def cited_papers(answer: Answer) -> list[Paper]:
    """The papers an `Answer` cites, in the order of their numbers; none for a declined answer. An answer that
    cites nothing but names retrieved papers in its text is about those."""
    if answer.declined:
        return []
    cited = {citation.paper_id for citation in answer.citations}
    papers = [source.paper for source in answer.sources if source.paper_id in cited]
    return papers or papers_named_in(answer.text, [source.paper for source in answer.sources])


def papers_in_view(
    question: str, history: History, retriever, k: int | None = None, filters: Filters | None = None
) -> list[Paper]:
    """The papers the previous answer was about, when `question` follows up on it; else none.

    From an `Answer`: the papers it cites. From plain text: the papers whose titles it writes (among every
    paper, when the retriever lists them: `retriever.papers()`); else, in the previous question's retrieval
    asked again, the papers it both names and cites by [n], else those it cites, else those it names. A name
    alone is the weakest sign: an answer may compare its paper with a method another paper made."""
    if not needs_rewrite(question, history):
        return []
    answer = history[-1][1]
    if is_declined(answer):
        return []
    if isinstance(answer, Answer):
        return cited_papers(answer)
    text = turn_text(answer)
    listed = getattr(retriever, "papers", None)
    corpus = list(listed().values()) if callable(listed) else []
    titled = papers_named_in(text, corpus, names=False)
    if titled:
        return titled
    earlier = retriever.search(previous_standalone(history), k=k, filters=filters)
    by_number = {source.number: source.paper for source in earlier}
    cited = [by_number[number] for number in parse_citations(text) if number in by_number]
    named = papers_named_in(text, [source.paper for source in earlier])
    cited_ids = {paper.id for paper in cited}
    return [paper for paper in named if paper.id in cited_ids] or cited or named


def previous_standalone(history: History) -> str:
    """The last turn's question as it stood alone: as kept, else rewritten without a model from the turns
    before it (plain-text history does not keep the rewrite)."""
    question = turn_question(history)
    earlier = history[:-1]
    if isinstance(history[-1][1], Answer) or not needs_rewrite(question, earlier):
        return question
    return heuristic_rewrite(question, earlier)


def search_in_view(
    retriever,
    standalone: str,
    question: str,
    in_view: Sequence[Paper],
    k: int | None = None,
    filters: Filters | None = None,
) -> list[Source]:
    """Retrieve for the `standalone` question with the papers `in_view` among the sources: first, unless the
    follow-up `question` names another retrieved paper without referring back ("what about XNet?")."""
    sources = retriever.search(standalone, k=k, filters=filters)
    kept = [paper for paper in in_view if filters is None or filters.is_empty() or matches_filters(paper, filters)]
    if not kept:
        return sources
    ids = {paper.id for paper in kept}
    others = [paper for paper in papers_named_in(question, [source.paper for source in sources]) if paper.id not in ids]
    first = not others or refers_back(question)
    return keep_in_view(sources, kept, limit=k or max(len(sources), len(kept)), first=first)


def keep_in_view(sources: Sequence[Source], papers: Sequence[Paper], limit: int, first: bool) -> list[Source]:
    """`sources` with `papers` among the first `limit`, renumbered 1..n.

    With `first`, those papers lead, in their retrieval order (those retrieved for the new question first),
    then the other sources in order. Otherwise the ranking stands and a paper that fell outside it takes the
    place of the last other source. A paper the retrieval missed gets the lowest retrieved score and no
    dense score (the relevance gate reads the retrieved papers)."""
    ids = [paper.id for paper in papers]
    retrieved = {source.paper_id: source for source in sources}
    floor = min((source.score for source in sources), default=0.0)
    pinned = [source for source in sources if source.paper_id in ids]
    pinned += [
        Source(number=1, paper=paper, score=floor, passage=paper.abstract)
        for paper in papers
        if paper.id not in retrieved
    ]
    pinned = list({source.paper_id: source for source in pinned}.values())[:limit]
    others = [source for source in sources if source.paper_id not in ids]
    if first:
        ordered = pinned + others
    else:
        room = {source.paper_id for source in others[: max(limit - len(pinned), 0)]}
        kept_ids = room | {source.paper_id for source in pinned}
        ordered = [source for source in sources if source.paper_id in kept_ids]
        ordered += [source for source in pinned if source.paper_id not in retrieved]
    return [source.model_copy(update={"number": n}) for n, source in enumerate(ordered[:limit], start=1)]


# --- the standalone question --------------------------------------------------------------------------------


def subject_of(history: History, in_view: Sequence[Paper] = ()) -> str:
    """What the previous turn was about, in words a question can carry: the name of the one paper it was
    about, else its question's key terms (with several papers in view, which one is meant is the follow-up's
    to say)."""
    if len(in_view) == 1:
        return subject_name(in_view[0])
    return " ".join(_key_words(turn_question(history)))


def _key_words(text: str) -> list[str]:
    """The words of `text` that are key terms, as written, each once."""
    important = key_terms(text)
    return list(dict.fromkeys(word for word in re.findall(r"[\w-]+", text) if key_terms(word) & important))


def heuristic_rewrite(question: str, history: History, in_view: Sequence[Paper] = ()) -> str:
    """A model-free rewrite: the previous turn's subject (the name of the one paper in view, and its question's
    key terms), then the follow-up (enough for retrieval)."""
    words = _key_words(turn_question(history))
    if len(in_view) == 1:
        name = subject_name(in_view[0])
        words = [name, *(word for word in words if word.lower() not in name.lower())]
    prefix = " ".join(dict.fromkeys(words))
    return f"{prefix}: {question}" if prefix else question


def keeps_subject(rewrite: str, question: str, history: History, in_view: Sequence[Paper] = ()) -> bool:
    """Whether a rewritten follow-up still says what it is about: it names a paper in view (by a name, or by its
    title however short), or keeps at least half of the previous question's key terms that the follow-up itself
    does not have."""
    written = f" {normalise_title(rewrite)} "
    if papers_named_in(rewrite, in_view) or any(f" {normalise_title(p.title)} " in written for p in in_view):
        return True
    wanted = key_terms(turn_question(history)) - key_terms(question)
    return not wanted or 2 * len(key_terms(rewrite) & wanted) >= len(wanted)


def format_history(history: History, turns: int) -> str:
    """The last `turns` turns for CONDENSE_PROMPT, each answer cut to its first sentences, without markers."""
    lines = []
    for question, answer in list(history)[-turns:] if turns else []:
        short = " ".join(split_sentences(remove_citations(turn_text(answer)))[:HISTORY_ANSWER_SENTENCES])
        lines.append(CONDENSE_TURN_TEMPLATE.format(question=question.strip(), answer=short))
    return "\n".join(lines)


_QUESTION_START = re.compile(
    r"^\W*(?:and\s+|so\s+|but\s+)?(?:what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|"
    r"can|could|should|would|will|has|have|had|tell|list|name|describe|explain|give|compare|summari[sz]e|show|find)\b",
    re.IGNORECASE,
)


def reads_as_question(text: str) -> bool:
    """True for a question or a request: it ends with "?" or opens with a question word or an imperative
    ("Which ...", "Does ...", "List ..."). The rewrite model sometimes restates the previous answer as a
    statement ("XNet boosts Y to 80%."), and answering that statement answers nothing asked."""
    return text.rstrip().endswith("?") or bool(_QUESTION_START.match(text))


def clean_rewrite(completion: str, question: str, history: History = (), in_view: Sequence[Paper] = ()) -> str | None:
    """The rewritten question from the model's completion, or None when it is unusable. Given the `history`,
    a rewrite that drops the previous turn's subject (`keeps_subject`) gets it appended."""
    line = next((line.strip() for line in completion.splitlines() if line.strip()), "")
    line = re.sub(r"^(?:standalone question|question)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`").strip()
    if not line or is_decline(line) or len(line) > 3 * len(question) + 200:
        return None
    if not reads_as_question(line) and reads_as_question(question):  # it restated an answer instead
        subject = subject_of(history, in_view) if history else None
        return f"{question} (about {subject})" if subject else None
    if history and not keeps_subject(line, question, history, in_view):
        subject = subject_of(history, in_view)
        return f"{line} (about {subject})" if subject else line
    return line
