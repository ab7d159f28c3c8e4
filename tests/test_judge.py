"""The support judge and claim checking: decision logic on scripted log-probabilities, the KV-cache reuse on a
fake llama.cpp model, answer sentences removed when contradicted, `Bot.check` and `rag check --json`, and the
claim-set metrics. The integration tests at the end run the real default model."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest

from eval.claims import ClaimRow, fit_bias, macro_f1, rationale_recall, stratified, support_vs_contradict
from rag.answer import Answerer, stated_premise
from rag.claims import overall_verdict, passage_sentences
from rag.evidence import build_evidence
from rag.judge import Judgement, LlamaJudge, SimilarityJudge, answer_verdict, decide, label_logprobs
from rag.settings import Settings
from rag.types import Paper, PaperVerdict, Source
from tests.test_answer import FakeGenerator, FakeRetriever, run

# --- decision logic ----------------------------------------------------------------------------------------


def test_the_highest_label_wins_and_probabilities_sum_to_one():
    judgement = decide({"supported": -0.5, "contradicted": -2.0, "not_addressed": -3.0}, {})
    assert judgement.verdict == "supported"
    assert math.isclose(sum(judgement.probabilities.values()), 1.0)
    assert judgement.confidence == max(judgement.probabilities.values())


def test_the_bias_moves_the_choice():
    logprobs = {"supported": -0.5, "contradicted": -1.0, "not_addressed": -3.0}
    assert decide(logprobs, {}).verdict == "supported"
    assert decide(logprobs, {"contradicted": 1.0}).verdict == "contradicted"
    assert decide(logprobs, {"not_addressed": 3.0}).verdict == "not_addressed"


def test_a_near_tie_is_not_a_contradiction():
    logprobs = {"supported": -1.2, "contradicted": -1.0, "not_addressed": -1.1}
    assert decide(logprobs, {}, min_margin=0.0).verdict == "contradicted"
    assert decide(logprobs, {}, min_margin=0.5).verdict == "not_addressed"
    clear = {"supported": -3.0, "contradicted": -0.2, "not_addressed": -3.0}
    assert decide(clear, {}, min_margin=0.5).verdict == "contradicted"


def test_an_answer_sentence_is_contradicted_only_when_the_model_itself_reads_it_so():
    bias = {"contradicted": 1.0, "not_addressed": 0.75}
    restated = decide({"supported": -0.6, "contradicted": -1.2, "not_addressed": -2.0}, bias)
    assert restated.verdict == "contradicted"  # the bias alone makes it a contradiction
    assert answer_verdict(restated).verdict == "supported"
    silent = decide({"supported": -1.0, "contradicted": -1.1, "not_addressed": -1.1}, bias)
    assert silent.verdict == "contradicted" and answer_verdict(silent).verdict == "not_addressed"
    false = decide({"supported": -2.2, "contradicted": -0.8, "not_addressed": -0.8}, bias)
    assert answer_verdict(false) == false
    assert answer_verdict(Judgement("contradicted", {"contradicted": 0.9})).verdict == "contradicted"


def test_no_finite_score_reads_as_not_addressed():
    assert decide({}, {}).verdict == "not_addressed"


def test_label_logprobs_are_a_log_softmax_over_the_vocabulary():
    logits = np.array([0.0, 2.0, 1.0, -1.0])
    result = label_logprobs(logits, {"supported": 1, "contradicted": 2, "not_addressed": 3})
    expected = logits - np.log(np.exp(logits).sum())
    assert result == pytest.approx(
        {"supported": expected[1], "contradicted": expected[2], "not_addressed": expected[3]}
    )


# --- llama.cpp mechanics, on a fake model ------------------------------------------------------------------


class FakeLlama:
    """Enough of llama_cpp.Llama for LlamaJudge: a token per character, a KV cache that records evaluations."""

    def __init__(self, favourite: str):
        self.input_ids = np.zeros(4096, dtype=np.intc)
        self.n_tokens = 0
        self.evaluated: list[int] = []
        self.favourite = favourite
        self.metadata = {"tokenizer.chat_template": ""}

    def tokenize(self, data: bytes, add_bos=False, special=True):
        return [ord(ch) for ch in data.decode()]

    def eval(self, tokens):
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)
        self.evaluated.append(len(tokens))

    def n_vocab(self):
        return 256


class ScriptedLlamaJudge(LlamaJudge):
    """LlamaJudge with a plain-text template, no KV snapshots, and logits favouring one label's first token."""

    def format(self, messages):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def session(self):
        return contextlib.nullcontext()

    def _last_logits(self):
        logits = np.zeros(256)
        logits[ord(self.llm.favourite[0])] = 5.0
        return logits


def test_the_judge_reads_the_labels_first_tokens_and_reuses_the_cached_prefix(tmp_path):
    llm = FakeLlama(favourite="Contradicts")
    judge = ScriptedLlamaJudge(llm, Settings(data_dir=tmp_path))
    first = judge.judge("X needs Y.", "X works without Y.")
    second = judge.judge("X needs Z.", "X works without Y.")
    assert first.verdict == second.verdict == "contradicted"
    assert llm.evaluated[1] < llm.evaluated[0] / 2  # the second claim re-evaluates only what differs


def test_a_pair_judged_before_is_not_evaluated_again(tmp_path):
    llm = FakeLlama(favourite="Supports")
    judge = ScriptedLlamaJudge(llm, Settings(data_dir=tmp_path))
    judge.judge_many([("A claim.", "A passage."), ("A claim.", "A passage.")])
    evaluations = len(llm.evaluated)
    assert evaluations == 1
    assert judge.judge("A claim.", "A passage.").verdict == "supported" and len(llm.evaluated) == evaluations


def test_a_description_is_read_by_the_models_own_label_order():
    from rag.choice import describes

    raw = {"supported": -0.8, "contradicted": -1.4, "not_addressed": -1.2}
    calibrated = decide(raw, {"contradicted": 1.0, "not_addressed": 0.75})
    assert calibrated.verdict != "supported" and describes(calibrated)
    assert not describes(decide({"supported": -2.0, "contradicted": -1.4, "not_addressed": -0.3}, {}))


def test_labels_must_start_with_different_tokens(tmp_path, monkeypatch):
    from rag import judge as judge_module

    monkeypatch.setitem(judge_module.JUDGE_LABEL_WORDS, "not_addressed", "Never")
    judge = ScriptedLlamaJudge(FakeLlama(favourite="Supports"), Settings(data_dir=tmp_path))
    judge.label_tokens()  # "Supports", "Contradicts", "Never": distinct first characters
    monkeypatch.setitem(judge_module.JUDGE_LABEL_WORDS, "not_addressed", "Silent")
    judge._label_tokens = None
    with pytest.raises(ValueError, match="share a first token"):
        judge.label_tokens()


# --- answers: a contradicted sentence goes --------------------------------------------------------------------


class ScriptedJudge:
    """Judges by a rule on the claim text: `verdict` when it contains `bad`; records what it was shown."""

    detects_contradiction = True

    def __init__(self, bad: str, verdict: str = "contradicted"):
        self.bad = bad
        self.verdict = verdict
        self.seen: list[tuple[str, str]] = []

    def judge(self, claim, passage):
        return self.judge_many([(claim, passage)])[0]

    def judge_many(self, pairs):
        self.seen.extend(pairs)
        verdicts = [self.verdict if self.bad in claim else "supported" for claim, _ in pairs]
        return [Judgement(verdict, {verdict: 0.9}) for verdict in verdicts]


ANSWER = (
    "ViLT processes visual inputs without convolution [2]. "
    "ViLT is up to tens of times slower than previous VLP models [2]."
)


def test_a_contradicted_sentence_is_removed_and_a_supported_one_stays(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="slower")
    settings = Settings(data_dir=tmp_path, judge_max_sentences=2)
    answerer = Answerer(FakeGenerator(ANSWER), word_embedder, settings, judge=judge)
    _, answer = run(answerer, "How fast is ViLT?", FakeRetriever(papers))
    assert "without convolution" in answer.text
    assert "slower" not in answer.text
    kept, removed = answer.sentences
    assert kept.verdict == "supported" and not kept.dropped
    assert removed.verdict == "contradicted" and removed.dropped and not removed.supported
    assert all(passage.startswith("ViLT: Vision-and-Language") for _, passage in judge.seen)  # the cited paper
    assert "judge" in answer.timings


class LogprobJudge(ScriptedJudge):
    """Returns the real judge's shape: biased verdicts with the model's raw log-probabilities."""

    def __init__(self, raw_by_word: dict[str, dict[str, float]], bias: dict[str, float]):
        super().__init__(bad="")
        self.raw_by_word = raw_by_word
        self.bias = bias

    def judge_many(self, pairs):
        self.seen.extend(pairs)
        default = {"supported": -0.1, "contradicted": -4.0, "not_addressed": -4.0}
        raws = [next((r for w, r in self.raw_by_word.items() if w in claim), default) for claim, _ in pairs]
        return [decide(raw, self.bias) for raw in raws]


def test_a_sentence_only_the_bias_finds_contradicted_stays_in_the_answer(papers, tmp_path, word_embedder):
    bias = {"contradicted": 1.0, "not_addressed": 0.75}
    raw = {"without": {"supported": -0.6, "contradicted": -1.2, "not_addressed": -2.0}}
    settings = Settings(data_dir=tmp_path, judge_max_sentences=2, judge_bias=bias)
    answerer = Answerer(FakeGenerator(ANSWER), word_embedder, settings, judge=LogprobJudge(raw, bias))
    _, answer = run(answerer, "How fast is ViLT?", FakeRetriever(papers))
    assert "without convolution" in answer.text and answer.sentences[0].verdict == "supported"
    biased = settings.with_changes(judge_answer_unbiased_contradiction=False)
    answerer = Answerer(FakeGenerator(ANSWER), word_embedder, biased, judge=LogprobJudge(raw, bias))
    _, answer = run(answerer, "How fast is ViLT?", FakeRetriever(papers))
    assert "without convolution" not in answer.text


def test_a_contradicted_premise_of_the_question_is_corrected_from_the_source(papers, tmp_path, word_embedder):
    judge = SentenceJudge(bad="slower", by="faster")
    answer_text = "ViLT is up to tens of times slower than previous VLP models [2]."
    answerer = Answerer(FakeGenerator(answer_text), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "Why is ViLT slower than previous VLP models?", FakeRetriever(papers))
    assert not answer.declined
    assert "slower" not in answer.text
    assert answer.text.startswith("The question's premise does not hold: “ViLT” states that")
    assert "tens of times faster than previous VLP models [2]" in answer.text
    correction = next(check for check in answer.sentences if check.composed)
    assert correction.citations == [2] and correction.verdict == "contradicted"


def test_a_question_without_a_premise_gets_no_premise_correction(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="slower")
    answer_text = "ViLT is up to tens of times slower than previous VLP models [2]."
    answerer = Answerer(FakeGenerator(answer_text), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "How much slower is ViLT than previous VLP models?", FakeRetriever(papers))
    assert "premise" not in answer.text and "slower" not in answer.text
    assert not any(check.composed for check in answer.sentences)


@pytest.mark.parametrize(
    ("question", "premise"),
    [
        ("Given that ViLT is slower than previous VLP models, why use it?", "ViLT is slower than previous VLP models"),
        ("Since XNet was trained on ten images, how well does it generalise?", "XNet was trained on ten images"),
        ("ViLT is slower than previous VLP models, right? By how much?", "ViLT is slower than previous VLP models"),
        ("Why is ViLT slower than previous VLP models?", None),  # its premise shows only if the answer repeats it
        ("How fast is ViLT?", None),
        ("Since when, right?", None),  # too short to be a claim
        ("Is the claim that ViLT uses convolution true?", None),  # asks, does not assume
    ],
)
def test_a_stated_premise_is_read_off_the_question(question, premise):
    assert stated_premise(question) == premise


def answer_with_premise(judge, premise: str, papers, tmp_path, word_embedder, **settings):
    """The answer to "Given that <premise>, why does it skip convolution?" over a fixed model answer."""
    answer_text = "ViLT processes visual inputs without convolution [2]."
    settings = Settings(data_dir=tmp_path, **settings)
    answerer = Answerer(FakeGenerator(answer_text), word_embedder, settings, judge=judge)
    question = f"Given that {premise}, why does it skip convolution?"
    return run(answerer, question, FakeRetriever(papers))[1]


def test_a_stated_premise_the_source_contradicts_opens_the_answer(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="slower")
    answer = answer_with_premise(judge, "ViLT is slower than previous VLP models", papers, tmp_path, word_embedder)
    assert answer.text.startswith("The question's premise does not hold: “ViLT” states that")
    assert "without convolution [2]" in answer.text
    assert {c for c, _ in judge.seen if "slower" in c} == {"ViLT is slower than previous VLP models"}


def test_a_quoted_record_sentence_keeps_the_papers_name_as_written(papers):
    from rag.answer import correction

    source = Source(number=2, paper=papers[1], score=1.0)
    record = "ViLT was presented as a talk on Tuesday 20 July."
    check = correction({"tuesday"}, [record], source)
    assert check.text.endswith("“ViLT” states that ViLT was presented as a talk on Tuesday 20 July [2]")


class SentenceJudge(ScriptedJudge):
    """Finds a claim containing `bad` contradicted, most strongly by a passage containing `by`."""

    def __init__(self, bad: str, by: str):
        super().__init__(bad)
        self.by = by

    def judge_many(self, pairs):
        self.seen.extend(pairs)
        return [
            Judgement("contradicted", {"contradicted": 0.9 if self.by in passage else 0.6})
            if self.bad in claim
            else Judgement("supported", {"supported": 0.9})
            for claim, passage in pairs
        ]


def test_the_correction_quotes_the_sentence_the_judge_finds_contradicting(papers, tmp_path, word_embedder):
    judge = SentenceJudge(bad="slower", by="tens of times faster")
    premise = "ViLT is slower than previous VLP models"
    answer = answer_with_premise(judge, premise, papers, tmp_path, word_embedder, judge_passage_sentences=3)
    first = answer.sentences[0]
    assert first.composed and "tens of times faster than previous VLP models [2]" in first.text


def test_the_correcting_sentence_is_looked_for_beyond_the_judged_passage(papers, tmp_path, word_embedder):
    judge = SentenceJudge(bad="slower", by="minimal model")  # the judge reads a less alike sentence as deciding
    premise = "ViLT is slower than previous VLP models"
    narrow = {"judge_passage_sentences": 1}
    answer = answer_with_premise(judge, premise, papers, tmp_path, word_embedder, **narrow, correction_sentences=3)
    assert "a minimal model that processes visual inputs without convolution [2]" in answer.sentences[0].text
    answer = answer_with_premise(judge, premise, papers, tmp_path, word_embedder, **narrow, correction_sentences=1)
    assert "tens of times faster than previous VLP models [2]" in answer.sentences[0].text


class WholeAbstractJudge(ScriptedJudge):
    """Reads a claim containing `bad` against a passage: `raw` log-probabilities when the passage holds `by`,
    "not addressed" otherwise; the biased verdict as the real judge decides it."""

    def __init__(self, bad: str, by: str, raw: dict[str, float]):
        super().__init__(bad)
        self.by = by
        self.raw = raw

    def judge_many(self, pairs):
        self.seen.extend(pairs)
        unaddressed = {"supported": -3.0, "contradicted": -3.0, "not_addressed": -0.1}
        supported = {"supported": -0.1, "contradicted": -4.0, "not_addressed": -4.0}
        raws = [
            (self.raw if self.by in passage else unaddressed) if self.bad in claim else supported
            for claim, passage in pairs
        ]
        return [decide(raw, {"contradicted": 1.0, "not_addressed": 0.75}) for raw in raws]


@pytest.mark.parametrize(
    ("raw", "whole", "corrected"),
    [
        ({"supported": -1.4, "contradicted": -1.1, "not_addressed": -1.0}, True, True),
        ({"supported": -1.4, "contradicted": -1.1, "not_addressed": -1.0}, False, False),  # the setting is off
        ({"supported": -0.9, "contradicted": -1.1, "not_addressed": -1.6}, True, False),  # only the bias says false
    ],
)
def test_an_unaddressed_premise_is_read_again_against_the_whole_abstract(
    raw, whole, corrected, papers, tmp_path, word_embedder
):
    judge = WholeAbstractJudge(bad="region supervision", by="minimal model", raw=raw)
    premise = "ViLT relies on region supervision"
    settings = {"judge_passage_sentences": 1, "premise_whole_abstract": whole}
    answer = answer_with_premise(judge, premise, papers, tmp_path, word_embedder, **settings)
    assert answer.text.startswith("The question's premise does not hold") is corrected
    if corrected:
        assert "a minimal model that processes visual inputs without convolution [2]" in answer.text


def test_the_sentence_that_says_otherwise_addresses_the_claim():
    from rag.answer import _says_otherwise

    off_topic = Judgement("not_addressed", {"supported": 0.05, "contradicted": 0.44, "not_addressed": 0.51})
    refuting = Judgement("contradicted", {"supported": 0.15, "contradicted": 0.43, "not_addressed": 0.42})
    assert _says_otherwise(refuting) > _says_otherwise(off_topic)  # though its "contradicted" is lower


def test_a_stated_premise_the_source_supports_changes_nothing(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="never said")
    answer = answer_with_premise(judge, "ViLT is faster than previous VLP models", papers, tmp_path, word_embedder)
    assert "premise" not in answer.text and not any(check.composed for check in answer.sentences)


@pytest.mark.parametrize(
    ("sentence", "drop_claims", "kept"),
    [
        ("Feature pyramids detect objects at 5 scales on a GPU [3].", False, False),  # 5 counts frames, not scales
        ("Feature pyramids detect objects at different scales on a GPU [3].", False, True),  # no figure: kept
        ("Feature pyramids detect objects at different scales on a GPU [3].", True, False),  # unaddressed: goes
    ],
)
def test_an_unaddressed_sentence_goes(sentence, drop_claims, kept, papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="", verdict="not_addressed")
    settings = Settings(data_dir=tmp_path, drop_unaddressed_claims=drop_claims)
    answerer = Answerer(FakeGenerator(sentence), word_embedder, settings, judge=judge)
    _, answer = run(answerer, "At how many scales do feature pyramids detect objects?", FakeRetriever(papers))
    assert judge.seen and answer.sentences[0].verdict == "not_addressed"
    assert answer.sentences[0].dropped is not kept
    assert answer.declined is not kept


def test_an_unaddressed_naming_sentence_stays_when_the_question_asks_which_paper(papers, tmp_path, word_embedder):
    """A "which paper" answer restates the question's paraphrase, which the judge often cannot match to the
    abstract: the paper choice is checked on the description instead, and the sentence stays."""
    judge = ScriptedJudge(bad="", verdict="not_addressed")
    sentence = "Feature Pyramid Networks detect objects at different scales [3]."
    answerer = Answerer(FakeGenerator(sentence), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "Which method detects objects at different scales?", FakeRetriever(papers))
    assert judge.seen and answer.sentences[0].verdict == "not_addressed"
    assert not answer.sentences[0].dropped and not answer.declined


def test_the_next_sentence_is_judged_when_one_is_removed(papers, tmp_path, word_embedder):
    """A sentence that elaborates a removed one is judged in its place, and the answer with nothing backed left
    is declined; with nothing removed, only the first sentence is judged."""
    judge = ScriptedJudge(bad="", verdict="not_addressed")
    text = (
        "Feature pyramids detect objects at different scales [3]. "
        "A top-down architecture with lateral connections builds semantic feature maps at all scales [3]."
    )
    answerer = Answerer(FakeGenerator(text), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "How do feature pyramids work?", FakeRetriever(papers))
    assert len(judge.seen) == 2 and answer.declined
    settings = Settings(data_dir=tmp_path, judge_after_drop=0)
    answerer = Answerer(FakeGenerator(text), word_embedder, settings, judge=judge)
    judge.seen.clear()
    _, answer = run(answerer, "How do feature pyramids work?", FakeRetriever(papers))
    assert len(judge.seen) == 1 and not answer.declined


def test_a_figure_from_the_papers_record_stays_when_unaddressed(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="", verdict="not_addressed")
    text = "The ViLT talk was on Tue 20 July at 7:00 PDT [2]."
    answerer = Answerer(FakeGenerator(text), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "When was the ViLT talk?", FakeRetriever(papers))
    assert not answer.declined and "7:00" in answer.text


def test_only_the_first_sentences_are_judged(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="slower")
    answerer = Answerer(FakeGenerator(ANSWER), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "How fast is ViLT?", FakeRetriever(papers))
    assert len(judge.seen) == 1 and "slower" in answer.text  # the default judges the first sentence only


def test_answers_are_not_judged_when_the_setting_is_off(papers, tmp_path, word_embedder):
    judge = ScriptedJudge(bad="slower")
    settings = Settings(data_dir=tmp_path, judge_answers=False)
    _, answer = run(
        Answerer(FakeGenerator(ANSWER), word_embedder, settings, judge=judge), "How fast?", FakeRetriever(papers)
    )
    assert "slower" in answer.text and not judge.seen
    assert all(check.verdict is None for check in answer.sentences)


def test_a_judge_blind_to_negation_leaves_answers_as_verified(papers, tmp_path, word_embedder):
    judge = SimilarityJudge(word_embedder, Settings(data_dir=tmp_path))
    answerer = Answerer(FakeGenerator(ANSWER), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "How fast is ViLT?", FakeRetriever(papers))
    assert "slower" in answer.text  # similarity cannot see the contradiction; it does not pretend to


# --- claim checking --------------------------------------------------------------------------------------------


def test_the_passage_is_the_sentences_most_like_the_claim_in_abstract_order(papers, word_embedder):
    source = Source(number=1, paper=papers[1], score=1.0)
    evidence = build_evidence([source], word_embedder)[1]
    vector = word_embedder.embed(["faster VLP models"])[0]
    chosen = passage_sentences("faster VLP models", vector, evidence, 2)
    body = evidence.sentences[evidence.abstract_start :]
    assert len(chosen) == 2 and chosen[-1].startswith("ViLT is up to tens of times faster")
    assert [body.index(sentence) for sentence in chosen] == sorted(body.index(sentence) for sentence in chosen)


def evidence_of(title: str, abstract: str, embedder):
    """The evidence of one fixture paper given by its title and abstract."""
    paper = Paper(id="p", title=title, abstract=abstract)
    return build_evidence([Source(number=1, paper=paper, score=1.0)], embedder)[1]


def test_a_sentence_that_points_back_comes_with_the_one_before_it(word_embedder):
    abstract = (
        "Memory is a bottleneck. An earlier method fed compact codes to the network. "
        "This approach reached 85% accuracy with 3% of the memory. We extend it to unlabelled data."
    )
    evidence = evidence_of("Compact inputs, extended", abstract, word_embedder)
    vector = word_embedder.embed(["reached 85% accuracy with 3% of the memory"])[0]
    chosen = passage_sentences("reached 85% accuracy with 3% of the memory", vector, evidence, 1)
    assert chosen == [
        "An earlier method fed compact codes to the network.",
        "This approach reached 85% accuracy with 3% of the memory.",
    ]


def test_the_passage_prefers_the_sentence_that_names_what_the_claim_names(papers, word_embedder):
    source = Source(number=1, paper=papers[1], score=1.0)
    evidence = build_evidence([source], word_embedder)[1]
    claim = "ViLT processes visual inputs without convolution"
    vector = word_embedder.embed(["faster VLP models"])[0]  # a vector that points elsewhere
    assert passage_sentences(claim, vector, evidence, 1, lexical_weight=0.0)[0].startswith("ViLT is up to")
    assert "without convolution" in passage_sentences(claim, vector, evidence, 1, lexical_weight=0.9)[0]


def test_a_claim_about_the_paper_is_not_read_against_its_author_record(papers, word_embedder):
    source = Source(number=1, paper=papers[1], score=1.0)
    evidence = build_evidence([source], word_embedder)[1]
    claim = "ViLT Vision-and-Language Transformer Without Convolution or Region Supervision is proposed"
    vector = word_embedder.embed([claim])[0]
    assert not any("written by" in sentence for sentence in passage_sentences(claim, vector, evidence, 3, 0.4))


def test_a_sentence_holding_the_claims_figure_is_always_in_the_passage(word_embedder):
    abstract = (
        "We search for a cell on a small dataset. The cell transfers to a large dataset. "
        "Stacked cells reach a 3.7% error rate. Searching costs a few days."
    )
    evidence = evidence_of("Searching for blocks", abstract, word_embedder)
    claim = "The searched cell transfers with 3.7% error"
    vector = word_embedder.embed(["search for a cell on a small dataset"])[0]  # points at another sentence
    chosen = passage_sentences(claim, vector, evidence, 1)
    assert "Stacked cells reach a 3.7% error rate." in chosen and len(chosen) == 2


def test_a_claim_about_authors_is_read_against_the_author_record(papers, word_embedder):
    source = Source(number=1, paper=papers[1], score=1.0)
    evidence = build_evidence([source], word_embedder)[1]
    vector = word_embedder.embed(["ViLT was written by Wonjae Kim"])[0]
    assert any(
        "written by" in sentence
        for sentence in passage_sentences("ViLT was written by Wonjae Kim", vector, evidence, 2)
    )


def verdict(kind: str, confidence: float) -> PaperVerdict:
    return PaperVerdict(paper_id=kind, title=kind, verdict=kind, confidence=confidence)


def test_the_claims_verdict_is_the_most_confident_deciding_paper():
    assert overall_verdict([]) == "not_enough_info"
    assert overall_verdict([verdict("not_addressed", 0.9)]) == "not_enough_info"
    assert overall_verdict([verdict("supported", 0.6), verdict("contradicted", 0.8)]) == "contradicted"
    assert overall_verdict([verdict("supported", 0.9), verdict("contradicted", 0.8)]) == "supported"


class AlwaysJudge:
    detects_contradiction = True

    def __init__(self, kind):
        self.kind = kind

    def judge_many(self, pairs):
        return [Judgement(self.kind, {self.kind: 0.8}, {self.kind: -0.2}) for _ in pairs]


def test_bot_check_reports_each_paper_with_its_deciding_sentence(settings, papers):
    from rag import Bot

    bot = Bot(settings)
    bot.index.ingest(papers)
    bot.__dict__["judge"] = AlwaysJudge("contradicted")
    result = bot.check("ViLT is slower than previous VLP models.", k=2)
    assert result.verdict == "contradicted"
    assert result.papers and all(paper.verdict == "contradicted" for paper in result.papers)
    abstracts = {paper.id: paper.abstract for paper in papers}
    assert all(paper.sentence and paper.sentence in abstracts[paper.paper_id] for paper in result.papers)
    shape = result.as_json()
    assert set(shape) == {"claim", "verdict", "papers"}
    assert set(shape["papers"][0]) == {"paper_id", "title", "verdict", "sentence"}


def test_rag_check_json(settings, papers, capsys, monkeypatch):
    from rag import Bot
    from rag.cli import main

    Bot(settings).index.ingest(papers)
    for name, value in {
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_EMBEDDING_MODEL": settings.index.embedding_model,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RAG_SENTENCE_VECTORS_AT_INGEST", "false")
    code = main(
        [
            "check",
            "ViLT processes visual inputs without convolution",
            "--collection",
            "test",
            "--backend",
            "extractive",
            "--json",
        ]
    )
    shape = json.loads(capsys.readouterr().out)
    assert code == 0
    assert shape["claim"].startswith("ViLT") and shape["verdict"] in {"supported", "contradicted", "not_enough_info"}
    assert all(set(paper) == {"paper_id", "title", "verdict", "sentence"} for paper in shape["papers"])


def test_an_empty_claim_is_a_one_line_error(capsys):
    from rag.cli import main

    assert main(["check", "   "]) == 2
    assert capsys.readouterr().err.startswith("rag: error:")


# --- claim-set metrics -----------------------------------------------------------------------------------------


def test_macro_f1_on_a_hand_computed_example():
    gold = ["supported", "supported", "contradicted", "not_enough_info"]
    predicted = ["supported", "contradicted", "contradicted", "supported"]
    # supported: tp 1, fp 1, fn 1 -> 0.5; contradicted: tp 1, fp 1 -> 2/3; nei: 0
    assert macro_f1(gold, predicted) == pytest.approx((0.5 + 2 / 3 + 0) / 3, abs=1e-4)


def test_the_fitted_bias_undoes_a_constant_preference():
    gold = ["supported", "contradicted"] * 10
    logprobs = [
        {"supported": -0.1, "contradicted": -1.0 if g == "supported" else -0.5, "not_addressed": -9.0} for g in gold
    ]
    assert support_vs_contradict(gold, logprobs, {}) == 0.5  # the model always prefers "supported"
    bias = fit_bias(gold, logprobs)
    assert support_vs_contradict(gold, logprobs, bias) == 1.0


def test_stratified_sampling_balances_the_labels():
    rows = [
        ClaimRow(id=str(i), claim="c", gold_ids=["1"], verdict=v)
        for i, v in enumerate(["SUPPORT"] * 10 + ["CONTRADICT"] * 3)
    ]
    picked = stratified(rows, 6)
    assert sorted(row.verdict for row in picked) == ["CONTRADICT"] * 3 + ["SUPPORT"] * 3


def test_rationale_recall_counts_gold_sentences_in_the_passage():
    row = ClaimRow(
        id="1", claim="c", gold_ids=["7"], verdict="SUPPORT", evidence={"7": {"label": "SUPPORT", "sentences": [0, 2]}}
    )
    assert rationale_recall(row, "7", ["A one.", "B two.", "C three."], "Title\nA one. C three.") == 1.0
    assert rationale_recall(row, "7", ["A one.", "B two.", "C three."], "Title\nA one. B two.") == 0.5
    assert rationale_recall(row, "8", ["A one."], "x") is None


# --- the real model -----------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_real_judge_separates_support_from_contradiction(real_settings):
    from rag import Bot

    bot = Bot(real_settings)
    passage = (  # unlike the judge's worked examples, so the test does not read one of them back
        "A field trial of a nitrogen fertiliser on wheat\n"
        "The fertiliser increased grain yield by a fifth, while plant height did not change."
    )
    supported = bot.judge.judge("The fertiliser raises the grain yield of wheat.", passage)
    contradicted = bot.judge.judge("The fertiliser reduces the grain yield of wheat.", passage)
    assert supported.verdict == "supported"
    assert contradicted.verdict != "supported"


class PassageJudge:
    """Supports a claim only against a passage from the paper whose title starts with `title` (or one of them)."""

    detects_contradiction = True

    def __init__(self, title: str | tuple[str, ...]):
        self.title = title
        self.seen: list[tuple[str, str]] = []

    def judge_many(self, pairs):
        self.seen.extend(pairs)
        return [
            Judgement("supported" if passage.startswith(self.title) else "not_addressed", {"supported": 0.9})
            for _, passage in pairs
        ]


def test_a_declined_which_paper_question_names_the_paper_the_judge_finds_described(papers, tmp_path, word_embedder):
    from rag.prompts import DECLINE_TEXT

    judge = PassageJudge("ViLT")
    retriever = FakeRetriever([papers[1], papers[0], papers[2]])
    answerer = Answerer(FakeGenerator(DECLINE_TEXT), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "Which model processes visual inputs without any convolution?", retriever)
    assert not answer.declined
    assert "“ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision” [1]" in answer.text
    assert [citation.paper_id for citation in answer.citations] == ["vilt"]
    assert judge.seen[0][0] == "model processes visual inputs without any convolution"  # without the question frame


def test_a_declined_question_about_a_paper_it_names_is_not_answered_with_any_paper(papers, tmp_path, word_embedder):
    from rag.prompts import DECLINE_TEXT

    judge = PassageJudge("ViLT")
    retriever = FakeRetriever([papers[1], papers[0], papers[2]])
    answerer = Answerer(FakeGenerator(DECLINE_TEXT), word_embedder, Settings(data_dir=tmp_path), judge=judge)
    _, answer = run(answerer, "Which benchmark datasets does ViLT report its results on?", retriever)
    assert answer.declined
    assert not judge.seen  # the question is about the paper it names: no other paper is tried in its place


def test_the_refusal_stands_when_no_paper_fits_or_the_question_asks_for_no_paper(papers, tmp_path, word_embedder):
    from rag.prompts import DECLINE_TEXT

    for question, title in [("Which model runs on a toaster?", "Nothing"), ("How fast is ViLT?", "ViLT")]:
        judge = PassageJudge(title)
        answerer = Answerer(FakeGenerator(DECLINE_TEXT), word_embedder, Settings(data_dir=tmp_path), judge=judge)
        _, answer = run(answerer, question, FakeRetriever(papers))
        assert answer.declined and answer.text == DECLINE_TEXT


@pytest.mark.parametrize(
    ("fitting", "named"),
    [(("ViLT",), "vilt"), (("ViLT", "Feature"), "fpn"), ((), "fpn"), (("Adding",), "gradient-noise")],
)
def test_a_which_paper_answer_about_another_paper_than_the_best_retrieved(
    papers, tmp_path, word_embedder, fitting, named
):
    """The model names source [2] although [1] was retrieved first: the best-retrieved paper replaces the model's
    only when the judge finds the description in it and not in the model's paper; when neither fits, another
    retrieved paper that fits does; when none fits, the model's choice stands."""

    vilt, fpn, noise = papers[1], papers[2], papers[3]
    generator = FakeGenerator("Feature Pyramid Networks build feature pyramids inside a deep convnet [2].")
    settings = Settings(data_dir=tmp_path, weak_source_margin=None)
    answerer = Answerer(generator, word_embedder, settings, judge=PassageJudge(fitting))
    question = "Which model processes visual inputs without any convolution?"
    _, answer = run(answerer, question, FakeRetriever([vilt, fpn, noise]))
    assert [citation.paper_id for citation in answer.citations] == [named]
    assert ("The paper that fits this description is “ViLT" in answer.text) is (named == "vilt")
    assert ("The paper that fits this description is “Adding" in answer.text) is (named == "gradient-noise")


@pytest.mark.parametrize(("fitting", "named"), [(("Feature",), "fpn"), ((), "vilt"), (("ViLT",), "vilt")])
def test_a_named_paper_whose_abstract_does_not_address_the_answer_gives_way_to_one_that_fits(
    papers, tmp_path, word_embedder, fitting, named
):
    """The model names the best-retrieved paper [1], the only one it was shown. When the judge finds [1] does not
    address the answer, the retrieved papers the model was not shown are read against the description, and one
    that fits replaces [1]; when none fits, or [1] supports the answer, the model's choice stands."""

    vilt, fpn = papers[1], papers[2]
    generator = FakeGenerator("ViLT processes visual inputs without convolution [1].")
    settings = Settings(data_dir=tmp_path, answer_sources=1, weak_source_margin=None)
    answerer = Answerer(generator, word_embedder, settings, judge=PassageJudge(fitting))
    question = "Which model builds feature pyramids inside a deep convnet?"
    _, answer = run(answerer, question, FakeRetriever([vilt, fpn]))
    assert [citation.paper_id for citation in answer.citations] == [named]
    assert ("The paper that fits this description is “Feature Pyramid" in answer.text) is (named == "fpn")


@pytest.mark.parametrize(
    ("question", "asks"),
    [
        ("Which model predicts depth from a stereo pair?", True),
        ("Is there a paper that pre-trains on fractal images?", True),
        ("What's that architecture called?", True),
        ("Which papers study graph depth?", False),
        ("How many parameters does XNet have?", False),
        ("What accuracy does the model reach?", False),
        ("For the paper that unifies tasks as text generation, which language model backbone do they build on?", False),
        ("What model does the paper fine-tune?", False),
        ("Which paper in the collection did Ann Lee co-author?", True),
        ("Which benchmark datasets (A-100? B-200?) does XNet report results on?", False),
        ("Which method does best on long graphs?", True),
        ("Which neural parser turns a shape into a program of boolean steps?", True),
        ("is there a book in here that treats networks like a physicist would?", True),
        ("Is there work showing that detectors train from single points?", True),
        ("Which datasets were used for the evaluation?", False),
        ("What learning rate schedules does XNet use?", False),
    ],
)
def test_questions_that_ask_which_paper(question, asks):
    from rag.context import asks_for_paper

    assert asks_for_paper(question) is asks


def test_a_claim_run_writes_both_parts_and_resumes_the_end_to_end_part(settings, tmp_path):
    from eval.claims import ClaimResult, run_claims

    corpus = tmp_path / "corpus.jsonl"
    abstracts = [
        ("1", "Walking and blood pressure", ["Daily walking lowered blood pressure.", "Heart rate did not change."]),
        ("2", "Coffee and sleep", ["Evening coffee shortened sleep.", "Morning coffee did not."]),
    ]
    corpus.write_text(
        "\n".join(json.dumps({"id": i, "title": t, "text": " ".join(s), "sentences": s}) for i, t, s in abstracts)
    )
    claims = tmp_path / "claims.jsonl"
    rows = [
        {"id": 1, "claim": "Walking lowers blood pressure.", "gold_ids": [1], "verdict": "SUPPORT",
         "evidence": {"1": {"label": "SUPPORT", "sentences": [0]}}},
        {"id": 2, "claim": "Evening coffee lengthens sleep.", "gold_ids": [2], "verdict": "CONTRADICT",
         "evidence": {"2": {"label": "CONTRADICT", "sentences": [0]}}},
    ]  # fmt: skip
    claims.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "run"
    judged = run_claims(claims, corpus, settings, out, judge_only_run=True, say=lambda _: None)
    assert judged["judge_only"]["claims"] == 2 and "end_to_end" not in judged
    both = run_claims(claims, corpus, settings, out, say=lambda _: None)
    assert both["end_to_end"]["claims"] == 2 and both["judge_only"]["claims"] == 2
    lines = [ClaimResult.model_validate_json(line) for line in (out / "results.jsonl").read_text().splitlines()]
    last = {result.id: result for result in lines}
    assert all(result.judge_logprobs is not None and result.e2e_verdict for result in last.values())
    assert (out / "report.md").read_text().startswith("# Claim checking")


def test_a_check_reads_deciding_papers_first_in_the_cli_text():
    from rag.cli import format_check
    from rag.types import ClaimCheck

    papers = [
        PaperVerdict(paper_id="a", title="Silent", verdict="not_addressed", sentence="S.", number=1),
        PaperVerdict(paper_id="b", title="Against", verdict="contradicted", sentence="C.", number=2),
    ]
    result = ClaimCheck(claim="x", verdict="contradicted", papers=papers)
    assert [heading for heading, _ in result.groups()] == ["Contradicts it", "Related, silent on it"]
    text = format_check(result)
    assert text.startswith("The collection contradicts this claim.")
    assert text.index("[2] Against") < text.index("[1] Silent") and "“C.”" in text


@pytest.mark.parametrize(("fitting", "added"), [(("Feature",), True), ((), False)])
def test_a_several_paper_answer_names_a_left_out_paper_the_judge_finds_fitting(
    papers, tmp_path, word_embedder, fitting, added
):
    """The model writes about [1] only; the judge reads the question against the left-out papers, and one it finds
    fitting is named after the answer, title and citation only."""

    vilt, fpn = papers[1], papers[2]
    generator = FakeGenerator("ViLT processes visual inputs without convolution [1].")
    settings = Settings(data_dir=tmp_path, weak_source_margin=None)
    answerer = Answerer(generator, word_embedder, settings, judge=PassageJudge(("ViLT", *fitting)))
    _, answer = run(answerer, "Which papers process images efficiently?", FakeRetriever([vilt, fpn]))
    assert ("Another paper that fits: “Feature Pyramid Networks for Object Detection” [2]." in answer.text) is added
    assert [citation.paper_id for citation in answer.citations] == (["vilt", "fpn"] if added else ["vilt"])


class DescriptionJudge:
    """Reads a claim holding one of `fits`' keys (a description) as supported by the passage of the paper whose
    title starts with that key's value, with that key's probability, and as contradicted by the passages of
    the `unrelated` papers; every other claim is supported."""

    detects_contradiction = True

    def __init__(self, fits: dict[str, tuple[str, float]], unrelated: tuple[str, ...] = ()):
        self.fits = fits
        self.unrelated = unrelated
        self.seen: list[tuple[str, str]] = []

    def judge_many(self, pairs):
        self.seen.extend(pairs)
        return [self._judge(claim, passage) for claim, passage in pairs]

    def _judge(self, claim: str, passage: str) -> Judgement:
        keys = [key for key in self.fits if key in claim]
        if not keys:
            return Judgement("supported", {"supported": 0.9})
        for key in keys:
            title, probability = self.fits[key]
            if passage.startswith(title):
                return Judgement("supported", {"supported": probability})
        verdict = "contradicted" if self.unrelated and passage.startswith(self.unrelated) else "not_addressed"
        return Judgement(verdict, {"supported": 0.1})


def test_a_question_describing_its_papers_one_by_one_gets_each_described_paper(papers, tmp_path, word_embedder):
    """Each description is read on its own: the paper the answer left out is named. A cited paper that no
    description fits stays (the judge's contradictions of descriptions are not reliable enough to drop it)."""
    vilt, fpn, noise = papers[1], papers[2], papers[3]
    generator = FakeGenerator("ViLT processes visual inputs without convolution [1]. FPN builds pyramids [2].")
    judge = DescriptionJudge(
        {"without convolution": ("ViLT", 0.9), "training of very deep": ("Adding Gradient", 0.8)},
        unrelated=("Feature",),
    )
    settings = Settings(data_dir=tmp_path, weak_source_margin=None)
    answerer = Answerer(generator, word_embedder, settings, judge=judge)
    question = (
        "Which papers are practical: one that sees images without convolution, the other eases training of very "
        "deep networks?"
    )
    _, answer = run(answerer, question, FakeRetriever([vilt, fpn, noise]))
    assert "FPN builds pyramids [2]." in answer.text
    assert (
        "Another paper that fits: “Adding Gradient Noise Improves Learning for Very Deep Networks” [3]." in answer.text
    )
    assert [citation.paper_id for citation in answer.citations] == ["vilt", "fpn", "gradient-noise"]
    described = {claim for claim, _ in judge.seen if ": " in claim}
    assert described == {
        "practical: sees images without convolution",
        "practical: eases training of very deep networks",
    }


def test_a_description_goes_to_the_paper_the_judge_finds_supporting_it_most(papers, tmp_path, word_embedder):
    vilt, fpn, noise = papers[1], papers[2], papers[3]
    generator = FakeGenerator("ViLT processes visual inputs without convolution [1].")
    judge = DescriptionJudge(
        {
            "without convolution": ("ViLT", 0.9),
            "at different scales": ("Feature", 0.6),
            "scales or depths": ("Adding", 0.7),
        }
    )
    settings = Settings(data_dir=tmp_path, weak_source_margin=None, omitted_paper_checks=3)  # every paper read
    answerer = Answerer(generator, word_embedder, settings, judge=judge)
    question = "Which papers help vision: one that sees images without convolution, one at different scales or depths?"
    _, answer = run(answerer, question, FakeRetriever([vilt, fpn, noise]))
    assert (
        "Another paper that fits: “Adding Gradient Noise Improves Learning for Very Deep Networks” [3]." in answer.text
    )
    assert "Feature Pyramid" not in answer.text


def test_a_sentence_citing_two_papers_is_judged_against_both(papers, tmp_path, word_embedder):
    """ "XNet does A, while YNet does B [1][2]": against the first abstract alone, the half about the second
    paper cannot be read; both papers' sentences are in the judged passage."""
    answerer = Answerer(FakeGenerator(), word_embedder, Settings(data_dir=tmp_path), judge=ScriptedJudge(bad="x"))
    sources = FakeRetriever(papers[1:3]).search("q")
    evidence = build_evidence(sources, word_embedder)
    by_number = {source.number: source for source in sources}
    claim = "ViLT processes visual inputs without convolution, while FPN builds feature maps at all scales."
    vector = np.asarray(word_embedder.embed([claim])[0], dtype=np.float32)
    first = ["We present ViLT, a minimal model that processes visual inputs without convolution."]
    both = answerer.judged_passage(claim, vector, [1, 2], first, by_number, evidence)
    assert both.startswith("ViLT: Vision-and-Language") and "\n\nFeature Pyramid Networks" in both
    assert "builds high-level semantic feature maps" in both
    alone = answerer.judged_passage(claim, vector, [1], first, by_number, evidence)
    assert "Feature Pyramid" not in alone
