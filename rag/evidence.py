"""Evidence: what a source can back a claim with, and how strongly it backs a sentence.

A source's evidence is its record and abstract as sentences (`rag.records.paper_sentences`), each embedded,
plus the key terms and numbers of the whole (`rag.text`). A sentence's support by a source is the best cosine
similarity between the sentence and the source's sentences, blended with the share of the sentence's key
terms found in the source (`Settings.answer.support_lexical_weight`). A number in the sentence that the source does
not contain (say "12%" when the abstract says "7%") zeroes that source's support: numbers are where small
models hallucinate most, and embeddings barely notice them. Verification (`rag.verify`), claim attribution
(`rag.attribution`), quotes, claim checking and the prompt all read the same `Evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.corpus import coined_names
from rag.injection import safe_sentences
from rag.records import header_sentences, paper_sentences
from rag.text import is_coined, key_terms, numbers_in
from rag.types import Source


@dataclass
class Evidence:
    """One source as verification sees it: its sentences with embeddings, key terms and numbers."""

    number: int
    sentences: list[str]
    vectors: np.ndarray
    terms: set[str]
    numbers: set[str]
    abstract_start: int = 0
    """Index of the first abstract sentence in `sentences` (before it: title, authors, schedule)."""
    names: tuple[str, ...] = ()
    """One-word names the abstract coins (`rag.corpus.coined_names`): "XNet" names its paper as a title does."""


def source_sentences(source: Source) -> list[str]:
    """The sentences a source can support a claim with: its title, authors, schedule line, and the abstract's
    (else the retrieved passage's) sentences, without any that read like instructions to a model."""
    return paper_sentences(source.paper, source.passage)


def _body(source: Source) -> list[str]:
    return safe_sentences(source.paper.abstract or source.passage)


def build_evidence(sources: Sequence[Source], embedder) -> dict[int, Evidence]:
    """Evidence for each source, with all sentences embedded in one batch.

    Pass a `rag.embeddings.SentenceVectors` as `embedder` and only sentences it has not seen are embedded:
    a paper's sentences never change, so the answer stage does not pay for them on every question."""
    per_source = [(source, header_sentences(source.paper), _body(source)) for source in sources]
    texts = [sentence for _, header, body in per_source for sentence in header + body]
    vectors = embed(embedder, texts)
    evidence, start = {}, 0
    for source, header, body in per_source:
        sentences = header + body
        block = vectors[start : start + len(sentences)]
        start += len(sentences)
        joined = " ".join(sentences)
        evidence[source.number] = Evidence(
            source.number,
            sentences,
            block,
            key_terms(joined),
            numbers_in(joined),
            abstract_start=len(header),
            names=_coined_one_word_names(source.paper.abstract),
        )
    return evidence


def _coined_one_word_names(abstract: str) -> tuple[str, ...]:
    return tuple(name for name in coined_names(abstract, strict=True) if is_coined(name))


def embed(embedder, texts: list[str]) -> np.ndarray:
    """`embedder.embed(texts)` as float32, and an empty matrix for no texts (no model call)."""
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.asarray(embedder.embed(texts), dtype=np.float32)


def support_score(
    sentence: str, vector: np.ndarray, evidence: Evidence, lexical_weight: float
) -> tuple[float, list[str]]:
    """How well `evidence` backs `sentence` (0..1), and the sentence's numbers the source lacks.

    Cosine to the closest source sentence, blended with the share of the sentence's key terms the source
    contains; any missing number makes the score 0.
    """
    missing = sorted(numbers_in(sentence) - evidence.numbers)
    if missing or len(evidence.sentences) == 0:
        return 0.0, missing
    cosine = float(np.clip(np.max(evidence.vectors @ vector), 0.0, 1.0))
    terms = key_terms(sentence)
    overlap = len(terms & evidence.terms) / len(terms) if terms else cosine
    return (1 - lexical_weight) * cosine + lexical_weight * overlap, missing
