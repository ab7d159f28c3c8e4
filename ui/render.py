"""Pure rendering for the chat: answers, sources and exports as escaped HTML/Markdown strings.

Kept apart from the Gradio wiring so it can be tested without a browser and reused by other faces. Every piece
of corpus or user text goes through `escape` before it is placed in markup: an abstract that contains
`<script>` or `<img onerror=...>` must show as text, never run. Gradio's own sanitiser is a second line of
defence, not the first.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from rag import Answer, ClaimCheck, IngestReport, Source

CITATION_GROUP = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
"""A citation marker as the answer stage writes it: [3] or [1, 2]."""

MAX_AUTHORS_SHOWN = 6
"""Longer author lists end in 'et al.' so one paper cannot flood the sources panel."""

MAX_PROBLEMS_SHOWN = 3
"""An import report names this many unreadable entries; the rest are counted (the CLI lists them all)."""


def escape(text: str | None) -> str:
    """HTML-escape text (quotes included, so it is also safe inside attributes)."""
    return html.escape(text or "", quote=True)


def escape_markdown_html(text: str) -> str:
    """Neutralise raw HTML in Markdown meant for files: `\\<script>` renders as the text `<script>`."""
    return re.sub(r"([<>])", r"\\\1", text)


def source_anchor(turn: int, number: int) -> str:
    """DOM id of source [number] of turn `turn`; unique across the whole conversation."""
    return f"src-{turn}-{number}"


def link_citations(escaped_text: str, turn: int, sources: Sequence[Source]) -> str:
    """Turn every [n] marker of already-escaped answer text into a link to the source entry of that turn."""
    titles = {source.number: source.paper.title for source in sources}

    def link(number: int) -> str:
        if number not in titles:
            return f"[{number}]"
        return (
            f'<a class="cite" href="#{source_anchor(turn, number)}" '
            f'data-turn="{turn}" data-source="{number}" title="{escape(titles[number])}">[{number}]</a>'
        )

    def replace(match: re.Match[str]) -> str:
        numbers = [int(part) for part in match.group(1).split(",")]
        return "".join(link(number) for number in numbers)

    return CITATION_GROUP.sub(replace, escaped_text)


def render_streaming(partial_text: str) -> str:
    """The answer while it is still being generated: escaped text plus a typing cursor."""
    return escape(partial_text) + ' <span class="cursor">▍</span>'


def render_note(text: str) -> str:
    """A one-line status note in the answer's place: the warm-up step, or why the answer started again."""
    return f'<div class="waiting">{escape(text)}</div>\n\n'


def render_answer(answer: Answer, turn: int) -> str:
    """The finished answer as chat-message Markdown: linked citations, and an honest note when declined."""
    body = link_citations(escape(answer.text), turn, answer.sources)
    if answer.declined:
        closest = len(answer.sources)
        note = (
            f"The collection does not answer this question. The {closest} closest papers are listed under Sources."
            if closest
            else "The collection does not answer this question, and no paper came close."
        )
        return f'<div class="declined">{note}</div>\n\n{body}'
    return body


def answer_footer(answer: Answer, turn: int) -> str:
    """Small print under an answer: backend, time, citation count, and a Copy link (handled by cite.js)."""
    parts = [answer.backend] if answer.backend else []
    total = answer.timings.get("total")
    if total is not None:
        parts.append(f"{total:.1f} s")
    if not answer.declined:
        count = len(answer.citations)
        parts.append(f"{count} paper{'s' if count != 1 else ''} cited")
    if note := judge_note(answer):
        parts.append(note)
    copy = f'<a class="copy-answer" href="#copy-{turn}" title="Copy the answer with its references">Copy</a>'
    return f'<div class="answer-meta">{escape(" · ".join(parts))} {copy}</div>'


def render_check(result: ClaimCheck) -> str:
    """A claim check as chat Markdown: the verdict, then each paper under what it says, with its deciding
    sentence quoted."""
    lines = [f'<div class="verdict {escape(result.verdict)}">{escape(result.summary())}</div>', ""]
    if not result.papers:
        lines.append("No paper in the collection is about this claim.")
    for heading, papers in result.groups():
        lines.append(f"**{heading}**")
        lines += [f"- [{paper.number}] *{escape(paper.title)}*: “{escape(paper.sentence)}”" for paper in papers]
        lines.append("")
    return "\n".join(lines).strip()


def judge_note(answer: Answer) -> str:
    """What the support judge did to the answer, for the footer ("" when it judged nothing)."""
    judged = [check for check in answer.sentences if check.verdict is not None and not check.composed]
    if not judged:
        return ""
    removed = sum(check.verdict == "contradicted" for check in judged)
    note = f"{len(judged)} sentence{'s' if len(judged) != 1 else ''} judged against the cited abstract"
    return note + (f", {removed} removed as contradicted" if removed else "")


STOPPED_NOTE = '<div class="stopped">Stopped: the answer above is incomplete.</div>'
"""Appended to a partial answer after the user clicked Stop."""


def render_error(message: str) -> str:
    """A one-line, escaped error message for the chat (never a traceback)."""
    first_line = (message or "Unknown error.").strip().splitlines()[0]
    return f'<div class="error">⚠ {escape(first_line)}</div>'


def render_import_report(file_name: str, collection: str, report: IngestReport) -> str:
    """What an import did, in one short block: papers added, updated and already there, entries without an
    abstract, and the first few problems (each one line, escaped)."""
    added = report.papers - report.papers_skipped - report.papers_replaced
    counts = [_count(added, "paper") + " added"]
    if report.papers_replaced:
        counts.append(f"{report.papers_replaced:,} updated")
    if report.papers_skipped:
        counts.append(f"{report.papers_skipped:,} already there")
    if report.missing_abstracts:
        counts.append(_count(report.missing_abstracts, "entry", "entries") + " without an abstract")
    if report.problems:
        counts.append(_count(len(report.problems), "problem"))
    heading = f"<b>{escape(file_name)}</b> → <b>{escape(collection)}</b>: {escape(' · '.join(counts))}"
    if not report.papers:
        heading += ". No paper with a title was found in the file."
    problems = [f"<li>{escape(problem.splitlines()[0] if problem else '')}</li>" for problem in report.problems]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        more = len(problems) - MAX_PROBLEMS_SHOWN
        problems = [*problems[:MAX_PROBLEMS_SHOWN], f"<li>… and {more:,} more</li>"]
    listed = f'<ul class="import-problems">{"".join(problems)}</ul>' if problems else ""
    return f'<div class="import-report">{heading}{listed}</div>'


def _count(number: int, singular: str, plural: str | None = None) -> str:
    """'1 paper', '1,200 papers'."""
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"


def format_authors(authors: Sequence[str]) -> str:
    """'A, B and C', or the first few followed by 'et al.'."""
    if not authors:
        return ""
    if len(authors) > MAX_AUTHORS_SHOWN:
        return ", ".join(authors[:MAX_AUTHORS_SHOWN]) + " et al."
    if len(authors) == 1:
        return authors[0]
    return ", ".join(authors[:-1]) + " and " + authors[-1]


def paper_details(source: Source) -> list[tuple[str, str]]:
    """(label, value) pairs of the metadata a reader needs to find the talk or page."""
    paper = source.paper
    when = " ".join(part for part in (paper.day, paper.time_slot) if part)
    pairs = [
        ("Session", paper.session),
        ("Room", paper.room),
        ("Moderator", paper.moderator),
        ("Time", when),
        ("Year", str(paper.year) if paper.year else None),
        ("Source page", ", ".join(paper.sources)),
    ]
    return [(label, value) for label, value in pairs if value]


def render_source(source: Source, turn: int) -> str:
    """One source entry: number, title, authors, metadata, the passage shown to the model, and its score."""
    paper = source.paper
    details = "".join(
        f'<span class="meta-item"><span class="meta-label">{escape(label)}</span> {escape(value)}</span>'
        for label, value in paper_details(source)
    )
    authors = format_authors(paper.authors)
    score = f"score {source.score:.3f}"
    if source.dense_score is not None:
        score += f" · similarity {source.dense_score:.2f}"
    passage = source.passage or paper.abstract
    return (
        f'<li class="source" id="{source_anchor(turn, source.number)}">'
        f'<div class="source-head"><span class="source-num">[{source.number}]</span> '
        f'<span class="source-title">{escape(paper.title)}</span></div>'
        + (f'<div class="source-authors">{escape(authors)}</div>' if authors else "")
        + (f'<div class="source-meta">{details}</div>' if details else "")
        + f'<div class="source-passage">{escape(passage)}</div>'
        f'<div class="source-score">{escape(score)}</div>'
        "</li>"
    )


def render_source_list(sources: Iterable[Source], turn: int) -> str:
    return '<ol class="sources">' + "".join(render_source(source, turn) for source in sources) + "</ol>"


def render_turn_sources(answer: Answer, turn: int) -> str:
    """The sources of one answer: cited papers open, the retrieved-but-uncited ones collapsed.

    A declined answer cites nothing, so its retrieved papers are shown open as 'closest papers'.
    """
    question = f'<div class="turn-question">Q{turn}: {escape(answer.question)}</div>'
    if not answer.sources:
        return question + '<p class="muted">No papers were retrieved for this question.</p>'
    if answer.declined:
        return (
            question
            + '<div class="panel-label">Closest papers (not enough to answer)</div>'
            + render_source_list(answer.sources, turn)
        )
    cited = answer.cited_sources
    cited_numbers = {source.number for source in cited}
    uncited = [source for source in answer.sources if source.number not in cited_numbers]
    parts = [question]
    if cited:
        parts.append('<div class="panel-label">Cited</div>' + render_source_list(cited, turn))
    else:
        parts.append('<p class="muted">The answer cites no paper.</p>')
    if uncited:
        parts.append(
            f'<details class="uncited"><summary>{len(uncited)} more retrieved, not cited</summary>'
            + render_source_list(uncited, turn)
            + "</details>"
        )
    return "".join(parts)


def render_sources_panel(answers: Sequence[tuple[int, Answer]]) -> str:
    """The whole sources panel: the latest turn open, earlier turns collapsed (their links still resolve)."""
    if not answers:
        return (
            '<div class="sources-empty">Sources appear here: the papers each answer cites, with the passage '
            "used, and the other papers retrieved.</div>"
        )
    latest_turn, latest = answers[-1]
    parts = [f'<section class="turn latest">{render_turn_sources(latest, latest_turn)}</section>']
    for turn, answer in reversed(answers[:-1]):
        parts.append(
            f'<details class="turn earlier"><summary>Q{turn}: {escape(answer.question)}</summary>'
            f"{render_turn_sources(answer, turn)}</details>"
        )
    return '<div class="sources-panel">' + "".join(parts) + "</div>"


def reference_line(source: Source) -> str:
    """One plain-text reference for exports: [n] Title. Authors. Session, time. Source page."""
    paper = source.paper
    parts = [f"[{source.number}] {paper.title}."]
    if paper.authors:
        parts.append(format_authors(paper.authors) + ".")
    parts.extend(f"{label}: {value}." for label, value in paper_details(source))
    return " ".join(parts)


def conversation_markdown(turns: Sequence[tuple[str, Answer | None, str]], now: datetime | None = None) -> str:
    """The conversation as a Markdown document with the references of each answer.

    `turns` holds (question, final answer or None, shown text) so stopped or failed turns are kept too.
    Raw HTML in corpus or user text is backslash-escaped so a Markdown viewer shows it as text.
    """
    stamp = (now or datetime.now()).strftime("%Y-%m-%d %H:%M")
    lines = ["# Conversation with the paper-abstracts bot", "", f"_Exported {stamp}._", ""]
    for number, (question, answer, shown) in enumerate(turns, start=1):
        lines += [f"## Q{number}: {escape_markdown_html(question)}", ""]
        lines += [escape_markdown_html(answer.text if answer else shown), ""]
        if answer is None:
            continue
        if answer.declined:
            lines += ["_The collection does not answer this question._", ""]
        cited = answer.cited_sources if not answer.declined else answer.sources
        if cited:
            lines += ["**References**" if not answer.declined else "**Closest papers**", ""]
            lines += [f"- {escape_markdown_html(reference_line(source))}" for source in cited]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
