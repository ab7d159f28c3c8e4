"""Claim checking on a SciFact-style set: `rag eval --claims claims.jsonl --corpus corpus.jsonl`.

Two measurements, on claims written by experts outside this project:

* **judge only**: each claim judged against its gold abstract (the judge sees that abstract's sentences most
  like the claim, as `Bot.check` shows them); verdict accuracy on SUPPORT vs CONTRADICT, 3-label accuracy and
  macro-F1, and rationale recall (the share of the annotators' rationale sentences that were in the passage).
  The judge's raw label log-probabilities are kept, so `fit_bias` can calibrate `Settings.answer.judge_bias` on them.
* **end to end** (unless --judge-only): the corpus indexed into a collection of its own, `Bot.check(claim)`
  as a user calls it: gold abstract retrieved (recall@k), verdict accuracy and macro-F1, seconds per claim.

Label names: SciFact's SUPPORT / CONTRADICT / NOT_ENOUGH_INFO map to supported / contradicted /
not_enough_info (a claim) and not_addressed (a paper's verdict).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rag import Bot, ClaimCheck, CorpusError, Paper, Settings, benchmark_settings

GOLD_TO_CLAIM = {"SUPPORT": "supported", "CONTRADICT": "contradicted", "NOT_ENOUGH_INFO": "not_enough_info"}
CLAIM_LABELS = ("supported", "contradicted", "not_enough_info")


class ClaimRow(BaseModel):
    """One claim line; ids may be numbers (SciFact's own files) or strings (its BEIR export)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str
    claim: str
    gold_ids: list[str]
    verdict: str
    evidence: dict[str, dict] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return GOLD_TO_CLAIM[self.verdict]


class ClaimResult(BaseModel):
    id: str
    gold: str
    judge_verdict: str | None = None
    judge_logprobs: dict[str, float] = Field(default_factory=dict)
    rationale_recall: float | None = None
    judge_seconds: float | None = None
    e2e_verdict: str | None = None
    e2e_retrieved: list[str] = Field(default_factory=list)
    e2e_gold_found: bool | None = None
    e2e_seconds: float | None = None


# --- data -----------------------------------------------------------------------------------------------------
def load_claims(path: str | Path) -> list[ClaimRow]:
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(ClaimRow.model_validate(json.loads(line)))
        except (ValueError, KeyError) as error:
            raise CorpusError(str(path), f"bad claim row ({str(error).splitlines()[0]})", line=number) from error
    return rows


def load_abstracts(path: str | Path) -> dict[str, tuple[Paper, list[str]]]:
    """{id: (paper, the abstract's sentences as the set splits them)} of a SciFact corpus.jsonl."""
    abstracts = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sentences = [sentence.strip() for sentence in row.get("sentences") or [row["text"]]]
            paper = Paper(id=str(row["id"]), title=row.get("title") or "", abstract=" ".join(sentences))
        except (ValueError, KeyError, TypeError) as error:
            raise CorpusError(str(path), f"bad corpus row ({error})", line=number) from error
        abstracts[paper.id] = (paper, sentences)
    return abstracts


def stratified(rows: Sequence[ClaimRow], limit: int | None, seed: int = 0) -> list[ClaimRow]:
    """At most `limit` claims, the same number of each gold label where there are enough (so a small run still
    measures SUPPORT against CONTRADICT), in a fixed random order."""
    if not limit or limit >= len(rows):
        return list(rows)
    by_label = {label: [row for row in rows if row.label == label] for label in CLAIM_LABELS}
    rng = random.Random(seed)
    for group in by_label.values():
        rng.shuffle(group)
    picked = [row for group in itertools.zip_longest(*by_label.values()) for row in group if row is not None]
    return picked[:limit]


# --- metrics (pure) -------------------------------------------------------------------------------------------
def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = CLAIM_LABELS) -> float:
    """Mean over `labels` of each label's F1 (0 for a label never predicted nor gold)."""
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return round(statistics.fmean(scores), 4) if scores else 0.0


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    pairs = list(zip(gold, predicted, strict=True))
    return round(sum(g == p for g, p in pairs) / len(pairs), 4) if pairs else 0.0


def as_claim_label(verdict: str) -> str:
    return "not_enough_info" if verdict == "not_addressed" else verdict


def biased_verdict(logprobs: dict[str, float], bias: dict[str, float]) -> str:
    scores = {label: logprobs.get(label, -math.inf) + bias.get(label, 0.0) for label in logprobs}
    return as_claim_label(max(scores, key=scores.__getitem__))


def support_vs_contradict(gold: Sequence[str], logprobs: Sequence[dict[str, float]], bias: dict[str, float]) -> float:
    """Accuracy on the SUPPORT and CONTRADICT claims of the choice between those two labels alone."""
    pairs = [
        (
            g,
            "supported"
            if lp["supported"] + bias.get("supported", 0) >= lp["contradicted"] + bias.get("contradicted", 0)
            else "contradicted",
        )
        for g, lp in zip(gold, logprobs, strict=True)
        if g in ("supported", "contradicted") and lp
    ]
    return accuracy([g for g, _ in pairs], [p for _, p in pairs])


def fit_bias(gold: Sequence[str], logprobs: Sequence[dict[str, float]], step: float = 0.25, span: float = 8.0) -> dict:
    """The bias (supported fixed at 0) that maximises 3-label macro-F1, by grid search."""
    grid = [round(-span + step * i, 4) for i in range(int(2 * span / step) + 1)]
    best: tuple[float, dict] = (-1.0, {})
    for contradicted, neither in itertools.product(grid, grid):
        bias = {"supported": 0.0, "contradicted": contradicted, "not_addressed": neither}
        predicted = [biased_verdict(lp, bias) for lp in logprobs]
        score = macro_f1(gold, predicted)
        if score > best[0]:
            best = (score, bias)
    return best[1]


def summarise(results: Sequence[ClaimResult], bias: dict[str, float]) -> dict:
    """Figures of a run; the judge-only verdicts are recomputed under `bias` from the raw log-probabilities."""
    judged = [result for result in results if result.judge_verdict is not None]
    summary: dict = {"claims": len(results)}
    if judged:
        gold = [result.gold for result in judged]
        predicted = [biased_verdict(r.judge_logprobs, bias) if r.judge_logprobs else r.judge_verdict for r in judged]
        recalls = [result.rationale_recall for result in judged if result.rationale_recall is not None]
        two_way = [
            (g, p) for g, p in zip(gold, predicted, strict=True) if g != "not_enough_info" and p != "not_enough_info"
        ]
        with_logprobs = [result for result in judged if result.judge_logprobs]
        summary["judge_only"] = {
            "claims": len(judged),
            "support_vs_contradict_accuracy": support_vs_contradict(
                [r.gold for r in with_logprobs], [r.judge_logprobs for r in with_logprobs], bias
            )
            if with_logprobs
            else accuracy([g for g, _ in two_way], [p for _, p in two_way]),
            "accuracy": accuracy(gold, predicted),
            "macro_f1": macro_f1(gold, predicted),
            "rationale_recall": round(statistics.fmean(recalls), 4) if recalls else None,
            "seconds_per_claim": round(statistics.median(r.judge_seconds for r in judged), 2),
        }
    ended = [result for result in results if result.e2e_verdict is not None]
    if ended:
        gold = [result.gold for result in ended]
        predicted = [result.e2e_verdict for result in ended]
        summary["end_to_end"] = {
            "claims": len(ended),
            "gold_retrieved": round(statistics.fmean(bool(r.e2e_gold_found) for r in ended), 4),
            "accuracy": accuracy(gold, predicted),
            "macro_f1": macro_f1(gold, predicted),
            "support_vs_contradict_accuracy": accuracy(
                [g for g, p in zip(gold, predicted, strict=True) if g != "not_enough_info"],
                [p for g, p in zip(gold, predicted, strict=True) if g != "not_enough_info"],
            ),
            "seconds_per_claim_p50": round(statistics.median(r.e2e_seconds for r in ended), 2),
        }
    return summary


def rationale_recall(row: ClaimRow, paper_id: str, sentences: Sequence[str], passage: str) -> float | None:
    """Share of the annotators' rationale sentences for `paper_id` that the judge's passage contains."""
    evidence = row.evidence.get(paper_id)
    if not evidence or not evidence.get("sentences"):
        return None
    wanted = [sentences[index] for index in evidence["sentences"] if index < len(sentences)]
    return sum(sentence.strip() in passage for sentence in wanted) / len(wanted) if wanted else None


# --- runs -----------------------------------------------------------------------------------------------------
def judge_only(bot: Bot, row: ClaimRow, abstracts: dict[str, tuple[Paper, list[str]]]) -> dict:
    """The claim judged against its first gold abstract, shown as `Bot.check` shows a paper."""
    paper_id = next((gold for gold in row.gold_ids if gold in abstracts), None)
    if paper_id is None:
        return {}
    paper, sentences = abstracts[paper_id]
    started = time.perf_counter()
    verdict = bot.check_paper(row.claim, paper)
    if verdict is None:
        return {}
    return {
        "judge_verdict": as_claim_label(verdict.verdict),
        "judge_logprobs": verdict.logprobs,
        "rationale_recall": rationale_recall(row, paper_id, sentences, verdict.passage),
        "judge_seconds": round(time.perf_counter() - started, 3),
    }


def end_to_end(bot: Bot, row: ClaimRow) -> dict:
    started = time.perf_counter()
    result: ClaimCheck = bot.check(row.claim)
    retrieved = [paper.paper_id for paper in result.papers]
    return {
        "e2e_verdict": result.verdict,
        "e2e_retrieved": retrieved,
        "e2e_gold_found": bool(set(retrieved) & set(row.gold_ids)),
        "e2e_seconds": round(time.perf_counter() - started, 3),
    }


def run_claims(
    claims_path: Path,
    corpus_path: Path,
    settings: Settings,
    out: Path,
    *,
    limit: int | None = None,
    judge_only_run: bool = False,
    say: Callable[[str], None] = print,
) -> dict:
    """Judge-only and (unless `judge_only_run`) end-to-end runs; results.jsonl and report.md under `out`.
    Rerunning with the same `out` resumes: what a claim already has in results.jsonl is not asked again (a
    judge-only result gets its end-to-end part added; the last line of a claim wins)."""
    rows = stratified(load_claims(claims_path), limit)
    abstracts = load_abstracts(corpus_path)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done: dict[str, ClaimResult] = {}
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            if line.strip():
                result = ClaimResult.model_validate_json(line)
                done[result.id] = result
    bot = Bot(benchmark_settings(settings, "claims"))
    if not judge_only_run:
        report = bot.ingest([corpus_path])
        say(f"indexed {report.papers} abstracts ({report.chunks_added} new chunks) in {report.seconds:.0f} s")
    results = []
    with log.open("a", encoding="utf-8") as handle:
        for position, row in enumerate(rows, start=1):
            earlier = done.get(row.id)
            if earlier is not None and (judge_only_run or earlier.e2e_verdict is not None):
                results.append(earlier)
                continue
            fields = (
                earlier.model_dump() if earlier else {"id": row.id, "gold": row.label} | judge_only(bot, row, abstracts)
            )
            if not judge_only_run:
                fields |= end_to_end(bot, row)
            result = ClaimResult.model_validate(fields)
            handle.write(result.model_dump_json() + "\n")
            handle.flush()
            results.append(result)
            if position % 10 == 0:
                say(f"{position}/{len(rows)} claims")
    summary = summarise(results, settings.answer.judge_bias)
    summary["bias"] = settings.answer.judge_bias
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_report(summary, claims_path), encoding="utf-8")
    return summary


def render_report(summary: dict, claims_path: Path) -> str:
    lines = [
        f"# Claim checking: {claims_path.name}",
        "",
        f"claims: {summary['claims']}, bias: {summary.get('bias')}",
        "",
    ]
    for part in ("judge_only", "end_to_end"):
        if part in summary:
            lines += [f"## {part.replace('_', ' ')}", "", "| figure | value |", "| --- | --- |"]
            lines += [f"| {name} | {value} |" for name, value in summary[part].items()]
            lines.append("")
    return "\n".join(lines)
