"""The data that flows through the bot: Paper -> Chunk -> Source -> Answer (with Citations).

Pydantic models, so every value validates on creation and serialises to the JSON that `rag ask --json`, the
eval reports and the UI share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["supported", "contradicted", "not_addressed"]
"""What a passage says of a claim: it states it, it states the opposite, or it does not speak to it."""


class Paper(BaseModel):
    """One unique paper of the corpus, after duplicates across and within pages were merged."""

    id: str = Field(description="Stable id: derived from the normalised title, or the id given by a JSONL/CSV row.")
    title: str
    abstract: str
    authors: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list, description="Files (names) the paper was read from.")
    session: str | None = Field(default=None, description="Conference session name, for session pages.")
    room: str | None = None
    moderator: str | None = None
    day: str | None = Field(default=None, description="Day of the talk as printed, e.g. 'Tue 20 July'.")
    time_slot: str | None = Field(default=None, description="Time slot as printed, e.g. '7:00 - 7:20 PDT'.")
    year: int | None = None
    category: str | None = Field(
        default=None,
        description="Where the paper belongs, as its import gives it: arXiv categories ('cs.LG stat.ML') or the "
        "venue (journal, proceedings, container title).",
    )


class Filters(BaseModel):
    """Metadata filters a search can be narrowed by; all given filters must hold (case-insensitive)."""

    source: str | None = Field(default=None, description="Substring of a source file name.")
    session: str | None = Field(default=None, description="Substring of the session name.")
    author: str | None = Field(default=None, description="Substring of any author's name.")
    year: int | None = None
    year_from: int | None = Field(default=None, description="Earliest year, inclusive; papers of unknown year fail.")
    year_to: int | None = Field(default=None, description="Latest year, inclusive; papers of unknown year fail.")
    category: str | None = Field(
        default=None, description="Substring of the category or venue, e.g. 'cs.LG' or 'Neural Information'."
    )

    def is_empty(self) -> bool:
        return not any(value is not None and value != "" for value in self.model_dump().values())


class Chunk(BaseModel):
    """A piece of one paper's text as embedded: the title and authors are kept with every chunk."""

    id: str = Field(description="'<paper_id>#<index>'")
    paper_id: str
    index: int = Field(ge=0, description="Position of the chunk within its paper.")
    text: str = Field(description="The text that was embedded (title, authors, then abstract sentences).")


class Source(BaseModel):
    """A retrieved paper as handed to the answer stage and shown to the user; `number` is its [n] in prompts."""

    number: int = Field(ge=1)
    paper: Paper
    score: float = Field(description="Fused retrieval score (higher is better).")
    dense_score: float | None = Field(default=None, description="Best cosine similarity of its chunks.")
    passage: str = Field(default="", description="The text of this paper shown to the model.")
    named: bool = Field(
        default=False,
        description="The query names this paper verbatim (a rare title word or a name its abstract coins, an "
        "author, its session or moderator): evidence of relevance that a low dense score does not cancel.",
    )

    @property
    def paper_id(self) -> str:
        return self.paper.id

    @property
    def title(self) -> str:
        return self.paper.title


class Citation(BaseModel):
    """A citation marker [n] of the answer, mapped back to its paper."""

    number: int
    paper_id: str
    title: str


class SentenceCheck(BaseModel):
    """How one answer sentence is backed by the sources."""

    text: str
    citations: list[int] = Field(default_factory=list, description="Source numbers it cites after verification.")
    support: float = Field(default=0.0, description="Best similarity to a cited source (0..1).")
    supported: bool = False
    added_citations: list[int] = Field(default_factory=list, description="Citations added in code, not by the model.")
    removed_citations: list[int] = Field(
        default_factory=list,
        description="Citations the model wrote that were taken away: unknown numbers, or sources that do not "
        "support the sentence.",
    )
    dropped: bool = Field(default=False, description="True when the sentence was left out of the answer text.")
    renamed_from: str | None = Field(
        default=None,
        description="The paper name the model wrote, replaced by the title of the paper whose abstract supports "
        "the sentence (the named paper's does not).",
    )
    composed: bool = Field(
        default=False,
        description="Written in code from the cited paper, not by the model: its record (authors, schedule) or "
        "its title with an abstract sentence quoted.",
    )
    verdict: Verdict | None = Field(
        default=None,
        description="The support judge's reading of the cited abstract (rag.judge); None when not judged.",
    )


class Answer(BaseModel):
    """What `ask()` returns."""

    question: str
    standalone_question: str | None = Field(default=None, description="The question after follow-up rewriting.")
    text: str = Field(description="The answer with verified [n] markers.")
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list, description="Retrieved papers, numbered as in the answer.")
    sentences: list[SentenceCheck] = Field(default_factory=list)
    declined: bool = Field(default=False, description="True when the collection does not answer the question.")
    backend: str = ""
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage, plus 'first_token'.")

    @property
    def cited_sources(self) -> list[Source]:
        cited = {citation.number for citation in self.citations}
        return [source for source in self.sources if source.number in cited]


History = Sequence[tuple[str, str | Answer]]
"""Earlier turns of a conversation as (question, answer) pairs, oldest first. An answer is the `Answer` the bot
gave (its citations keep the papers it was about in view for a follow-up) or its text."""


class PaperVerdict(BaseModel):
    """What one paper's abstract says of a claim, with the sentence that decides it."""

    paper_id: str
    title: str
    verdict: Verdict
    sentence: str = Field(default="", description="The abstract sentence the verdict rests on, quoted as written.")
    number: int = Field(default=0, description="The paper's [n] among the papers checked.")
    confidence: float = Field(default=0.0, description="Judge probability of the verdict (0..1).")
    passage: str = Field(default="", description="What the judge read: the title and the sentences most like it.")
    logprobs: dict[str, float] = Field(
        default_factory=dict, description="The judge model's label log-probabilities before calibration."
    )


CLAIM_SUMMARIES = {
    "supported": "The collection supports this claim.",
    "contradicted": "The collection contradicts this claim.",
    "not_enough_info": "The collection does not settle this claim.",
}
GROUPS = {"supported": "Supports it", "contradicted": "Contradicts it", "not_addressed": "Related, silent on it"}
"""How a claim check's papers are grouped and headed, in the order a reader wants them."""


class ClaimCheck(BaseModel):
    """What `Bot.check(claim)` returns: the collection's verdict on a claim, paper by paper."""

    claim: str
    verdict: Literal["supported", "contradicted", "not_enough_info"]
    papers: list[PaperVerdict] = Field(
        default_factory=list,
        description="Papers that decide the claim first (supporting or contradicting), then the silent ones.",
    )
    timings: dict[str, float] = Field(default_factory=dict)

    def summary(self) -> str:
        """The verdict as one sentence a person reads (the same in the CLI and the chat)."""
        return CLAIM_SUMMARIES[self.verdict]

    def groups(self) -> list[tuple[str, list[PaperVerdict]]]:
        """(heading, papers) for each verdict some paper has: supporting, contradicting, then silent."""
        grouped = [(heading, [p for p in self.papers if p.verdict == verdict]) for verdict, heading in GROUPS.items()]
        return [(heading, papers) for heading, papers in grouped if papers]

    def as_json(self) -> dict:
        """The documented JSON shape of `rag check --json`."""
        return {
            "claim": self.claim,
            "verdict": self.verdict,
            "papers": [
                {"paper_id": p.paper_id, "title": p.title, "verdict": p.verdict, "sentence": p.sentence}
                for p in self.papers
            ],
        }


class Restart(BaseModel):
    """Sent in an answer stream when the text streamed so far is withdrawn: the answer starts again.

    The first prompt shows the model only the strongest papers (`Settings.answer.weak_source_margin`). When that
    answer is declined after verification, the model is asked again with every paper, and a stream consumer
    should clear what it has shown of the first attempt.
    """

    reason: str = Field(description="One line for the user: why the answer starts again.")


class IngestReport(BaseModel):
    """What `ingest()` did, for the CLI and logs."""

    files: int = 0
    entries: int = Field(default=0, description="Paper entries read, before merging duplicates.")
    papers: int = Field(default=0, description="Unique papers after merging.")
    chunks_added: int = 0
    papers_skipped: int = Field(default=0, description="Unchanged papers that were already indexed.")
    papers_replaced: int = Field(default=0, description="Changed papers whose old chunks were replaced.")
    missing_abstracts: int = Field(
        default=0,
        description="Entries read without an abstract: bibliography entries (arXiv, BibTeX, CSL-JSON) are left "
        "out, since answers quote abstracts; JSONL/CSV rows are kept under their title.",
    )
    problems: list[str] = Field(default_factory=list, description="One line per unreadable file or row.")
    notes: list[str] = Field(
        default_factory=list,
        description="One line per notable event that is not a problem, e.g. the index was rebuilt for a new "
        "embedding model.",
    )
    seconds: float = 0.0


class IngestProgress(BaseModel):
    """How far a running ingest is: passed to the `progress` callback of `ingest()` after each written step
    (and once before the first), so a face can show papers done, rate and time left."""

    done: int = Field(description="Papers written so far, of those that were new or changed.")
    total: int = Field(description="Papers to write: new or changed ones (unchanged ones are skipped).")
    skipped: int = Field(default=0, description="Papers already stored unchanged, not written again.")
    seconds: float = Field(default=0.0, description="Seconds since writing began.")
    rate: float = Field(default=0.0, description="Papers written per second so far (0 before the first step).")
    eta_s: float | None = Field(default=None, description="Seconds left at the rate so far; None before a rate.")

    def summary(self) -> str:
        """'indexed 1,200/10,000 papers · 48/s · ETA 3 min': the same line in the CLI and the chat."""
        parts = [f"indexed {self.done:,}/{self.total:,} papers"]
        if self.rate > 0:
            parts.append(f"{self.rate:,.0f}/s" if self.rate >= 10 else f"{self.rate:.1f}/s")
        if self.eta_s is not None and self.done < self.total:
            parts.append(f"ETA {_duration(self.eta_s)}")
        if self.skipped:
            parts.append(f"{self.skipped:,} unchanged skipped")
        return " · ".join(parts)


def _duration(seconds: float) -> str:
    """A coarse time left: '40 s', '3 min', '2 h 5 min' (a progress line needs no more precision)."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


class CollectionInfo(BaseModel):
    """One collection of the store, as `collections()` lists it."""

    name: str
    chunks: int = Field(description="Chunks stored (every paper has at least one).")
    papers: int | None = Field(
        default=None, description="Papers stored, as counted by the last writing ingest (None before one)."
    )
    embedding_model: str | None = Field(
        default=None, description="The embedding model its vectors were made with (None: not made by this bot)."
    )
