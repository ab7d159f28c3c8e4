"""The support judge: does a passage support a claim, contradict it, or not address it?

Similarity checks (`rag.verify`) cannot tell "X works without Y" from "X needs Y": both sentences share their
words with the source. The local model can read the difference. It is asked for one label word, and its
next-token log-probabilities over the three label words are read directly: one forward pass, no sampling,
no parsing of free text. A small model prefers one label whatever it reads, so a per-label bias
(`Settings.answer.judge_bias`) is added before the choice; it was fitted once on expert-labelled claims outside
machine learning (`rag eval --claims`), not on the bot's own questions.

Judging costs prefill only, so it reuses llama.cpp's KV cache: the judge's system prompt and worked examples
are a fixed prefix kept in a cache of the judge's own (`LlamaJudge.session`), so only the passage and the
claim are new to the model. (Judging an answer sentence inside the conversation that produced it was cheaper
still, but the model then approved its own false premises: "X slowed training [1]" where [1] says X speeds
it up.)

Backends without log-probabilities get `SimilarityJudge`, which can say "supported" or "not addressed" but
never "contradicted": an honest fallback, not a judge.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rag.prompts import (
    JUDGE_EXAMPLES,
    JUDGE_LABEL_WORDS,
    JUDGE_PROMPT,
    JUDGE_SYSTEM_PROMPT,
)
from rag.settings import Settings
from rag.text import split_sentences
from rag.types import Verdict

VERDICTS: tuple[Verdict, ...] = ("supported", "contradicted", "not_addressed")


@dataclass(frozen=True)
class Judgement:
    """The judge's reading: the chosen verdict and the calibrated probability of each verdict."""

    verdict: Verdict
    probabilities: Mapping[Verdict, float] = field(default_factory=dict)
    logprobs: Mapping[Verdict, float] = field(default_factory=dict)
    """The model's own label log-probabilities, before the bias (what `judge_bias` is fitted on)."""

    @property
    def confidence(self) -> float:
        return float(self.probabilities.get(self.verdict, 0.0))


def decide(logprobs: Mapping[Verdict, float], bias: Mapping[str, float], min_margin: float = 0.0) -> Judgement:
    """The verdict from label log-probabilities plus a per-label bias.

    The scores are renormalised over the three labels (softmax), so the probabilities say how the model
    weighs the labels against each other, not how likely the label word is among all words. "contradicted"
    must beat the runner-up by `min_margin` in log space: removing a sentence is the costly mistake, so a
    near-tie reads as "not addressed".
    """
    scores = {label: float(logprobs.get(label, -math.inf)) + float(bias.get(label, 0.0)) for label in VERDICTS}
    finite = [score for score in scores.values() if math.isfinite(score)]
    if not finite:
        return Judgement("not_addressed", dict.fromkeys(VERDICTS, 1 / 3), dict(logprobs))
    top = max(finite)
    weights = {label: math.exp(score - top) if math.isfinite(score) else 0.0 for label, score in scores.items()}
    total = sum(weights.values())
    probabilities = {label: weight / total for label, weight in weights.items()}
    ranked = sorted(VERDICTS, key=scores.__getitem__, reverse=True)
    verdict = ranked[0]
    if verdict == "contradicted" and scores[ranked[0]] - scores[ranked[1]] < min_margin:
        verdict = "not_addressed" if ranked[1] != "supported" else "supported"
    return Judgement(verdict, probabilities, dict(logprobs))


def answer_verdict(judgement: Judgement) -> Judgement:
    """The verdict on a sentence of the bot's own answer: "contradicted" stands only when the model's reading
    before the bias also puts contradiction above support; otherwise the likelier of the other two labels.

    `judge_bias` was fitted on expert claims, where contradicting claims are common. An answer sentence
    paraphrases the passage it cites, so support is far likelier a priori, and the bias's push toward
    "contradicted" removed true sentences (a figure or a title restated in other words). A false premise the
    model repeats is read as contradicted by the model itself, bias or not. A judgement without log-probabilities
    is left as it is."""
    raw = judgement.logprobs
    if judgement.verdict != "contradicted" or "contradicted" not in raw or "supported" not in raw:
        return judgement
    if raw["contradicted"] > raw["supported"]:
        return judgement
    probabilities = judgement.probabilities
    verdict: Verdict = max(("supported", "not_addressed"), key=lambda label: probabilities.get(label, 0.0))
    return Judgement(verdict, probabilities, raw)


def label_logprobs(logits: np.ndarray, label_tokens: Mapping[Verdict, int]) -> dict[Verdict, float]:
    """Log-softmax of `logits` (one position, the whole vocabulary) at each label's first token."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    top = float(np.max(logits))
    log_total = top + math.log(float(np.sum(np.exp(logits - top))))
    return {label: float(logits[token]) - log_total for label, token in label_tokens.items()}


class Judge(Protocol):
    """Anything that reads a passage and a claim and returns a `Judgement`."""

    detects_contradiction: bool
    """False for a judge that cannot tell a claim from its negation: its verdicts must not remove anything."""

    def judge(self, claim: str, passage: str) -> Judgement: ...

    def judge_many(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]: ...


def judge_prefix() -> list[dict[str, str]]:
    """The judge's system prompt and worked examples as earlier turns: the fixed prefix of every judgement."""
    messages = [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}]
    for passage, claim, verdict in JUDGE_EXAMPLES:
        messages.append({"role": "user", "content": JUDGE_PROMPT.format(passage=passage, claim=claim)})
        messages.append({"role": "assistant", "content": JUDGE_LABEL_WORDS[verdict]})
    return messages


# --- llama.cpp ------------------------------------------------------------------------------------------------


class LlamaJudge:
    """The judge on an in-process llama.cpp model (the answer generator's own, so no second load).

    It evaluates the prompt tokens itself (instead of asking for a completion) so that it can read the
    logits of the last position. Its fixed prefix (system prompt and worked examples, ~350 tokens) would cost
    ~8 s to evaluate, and an answer's cached system prompt ~3 s: so a judging session saves the model's KV
    cache as it found it, restores the judge's own from the last session, and puts the first back when it
    ends (a copy of ~15 MB each way, milliseconds). Within the cache, the longest prefix shared with the
    last judgement is not evaluated again. It holds the generator's lock, so it never runs during an answer.
    """

    detects_contradiction = True

    def __init__(self, llm: Any, settings: Settings, lock: threading.Lock | None = None):
        self.llm = llm
        self.settings = settings
        self.lock = lock or threading.Lock()
        self._label_tokens: dict[Verdict, int] | None = None
        self._formatter = None
        self._cache: KVSnapshot | None = None
        """The judge's own KV cache, as the last session left it."""
        self._memo: dict[tuple[str, str], dict[Verdict, float]] = {}
        """Label log-probabilities of recent (claim, passage) pairs, oldest first."""

    @classmethod
    def for_generator(cls, generator: Any, settings: Settings) -> LlamaJudge | None:
        """A judge sharing `generator`'s llama.cpp model and lock, or None when it has none."""
        llm = getattr(generator, "llm", None)
        if llm is None or not hasattr(llm, "eval"):
            return None
        return cls(llm, settings, lock=getattr(generator, "_lock", None))

    # --- public -------------------------------------------------------------------------------------------
    def judge(self, claim: str, passage: str) -> Judgement:
        return self.judge_many([(claim, passage)])[0]

    def judge_many(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        """Each (claim, passage) judged in one session of the judge's cache; a pair judged before is not
        evaluated again (a declined answer is asked twice, and both tries judge the same papers)."""
        new = [pair for pair in dict.fromkeys(pairs) if pair not in self._memo]
        if new:
            prompts = [self.tokenize(self.format(judge_messages(claim, passage))) for claim, passage in new]
            with self.lock, self.session():
                for pair, tokens in zip(new, prompts, strict=True):
                    self._memo[pair] = label_logprobs(self._eval_last(tokens), self.label_tokens())
            while len(self._memo) > _MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
        return [self._decide(self._memo[pair]) for pair in pairs]

    def warm_up(self) -> None:
        """Evaluate the judge's fixed prefix once, so the first judgement pays only for its own claim."""
        self.judge_many([("warm-up", "warm-up")])

    # --- mechanics ----------------------------------------------------------------------------------------
    def _decide(self, logprobs: Mapping[Verdict, float]) -> Judgement:
        return decide(logprobs, self.settings.answer.judge_bias, self.settings.answer.judge_contradiction_margin)

    @contextmanager
    def session(self) -> Iterator[None]:
        """The judge's KV cache in place for the duration, the model's previous one restored afterwards."""
        found = KVSnapshot.take(self.llm)
        if self._cache is not None:
            self._cache.restore(self.llm)
        try:
            yield
        finally:
            self._cache = KVSnapshot.take(self.llm)
            found.restore(self.llm)

    def format(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The chat template stored in the GGUF, ending where the assistant's reply starts."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = self.llm.metadata.get("tokenizer.chat_template", "")
            eos = self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", "ignore")
            bos = self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        return self._formatter(messages=list(messages)).prompt

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def label_tokens(self) -> dict[Verdict, int]:
        """Each label word's first token (the word as the reply's first word, without a leading space)."""
        if self._label_tokens is None:
            tokens = {label: self.tokenize(JUDGE_LABEL_WORDS[label])[0] for label in VERDICTS}
            if len(set(tokens.values())) != len(tokens):
                raise ValueError(f"The judge's label words share a first token: {JUDGE_LABEL_WORDS}")
            self._label_tokens = tokens
        return self._label_tokens

    def _eval_last(self, tokens: list[int]) -> np.ndarray:
        """Evaluate `tokens` after the longest prefix already in the KV cache; the last position's logits."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        shared = 0
        for old, new in zip(cached, tokens, strict=False):
            if old != new:
                break
            shared += 1
        shared = min(shared, len(tokens) - 1)  # at least one token is evaluated, to get fresh logits
        llm.n_tokens = shared  # `eval` drops the cached positions from here on
        llm.eval(tokens[shared:])
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        """Logits of the last evaluated position (llama-cpp-python keeps only those unless logits_all)."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).copy()


_MEMO_SIZE = 256


def judge_messages(claim: str, passage: str) -> list[dict[str, str]]:
    """The judge's conversation for one claim: the fixed prefix, then the passage and the claim."""
    question = JUDGE_PROMPT.format(passage=passage.strip(), claim=claim.strip())
    return [*judge_prefix(), {"role": "user", "content": question}]


@dataclass
class KVSnapshot:
    """A copy of a llama.cpp model's KV cache (sequence 0) and of the token record that goes with it."""

    data: bytes
    input_ids: np.ndarray
    n_tokens: int

    @classmethod
    def take(cls, llm: Any) -> KVSnapshot:
        import ctypes

        import llama_cpp

        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        return cls(bytes(buffer)[:written], llm.input_ids[: llm.n_tokens].copy(), llm.n_tokens)

    def restore(self, llm: Any) -> None:
        import ctypes

        import llama_cpp

        ctx = llm._ctx.ctx
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
        llm.n_tokens = 0
        if self.n_tokens and self.data:
            buffer = (ctypes.c_uint8 * len(self.data)).from_buffer_copy(self.data)
            if not llama_cpp.llama_state_seq_set_data(ctx, buffer, len(self.data), 0):
                return  # the cache stays empty: the next prompt is evaluated whole, which is only slower
            llm.input_ids[: self.n_tokens] = self.input_ids
            llm.n_tokens = self.n_tokens


# --- fallback -------------------------------------------------------------------------------------------------


class SimilarityJudge:
    """For backends without log-probabilities: "supported" when the claim is close to a passage sentence,
    else "not addressed". It never says "contradicted": similarity cannot see a negation."""

    detects_contradiction = False

    def __init__(self, embedder: Any, settings: Settings):
        self.embedder = embedder
        self.settings = settings

    def judge(self, claim: str, passage: str) -> Judgement:
        sentences = split_sentences(passage)
        if not sentences:
            return Judgement("not_addressed", {"supported": 0.0, "contradicted": 0.0, "not_addressed": 1.0})
        vectors = np.asarray(self.embedder.embed([claim, *sentences]), dtype=np.float32)
        similarity = float(np.clip(np.max(vectors[1:] @ vectors[0]), 0.0, 1.0))
        verdict: Verdict = "supported" if similarity >= self.settings.answer.support_threshold else "not_addressed"
        return Judgement(verdict, {"supported": similarity, "contradicted": 0.0, "not_addressed": 1 - similarity})

    def judge_many(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        return [self.judge(claim, passage) for claim, passage in pairs]


def judge_for(generator: Any, embedder: Any, settings: Settings) -> Judge:
    """The best judge the generator allows: the model's own log-probabilities, else similarity."""
    if settings.answer.judge != "off":
        judge = LlamaJudge.for_generator(generator, settings)
        if judge is not None:
            return judge
    return SimilarityJudge(embedder, settings)
