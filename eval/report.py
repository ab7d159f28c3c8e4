"""Reports people read and files tools read: markdown summary, full JSON, plots, and run-to-run comparison.

A run folder holds `report.md` (summary table per question type, the worst failures with the reason each
failed), `results.json` (run header, metrics, every per-question result), `metrics_by_type.png` and
`latency.png`. Comparing two run folders writes `comparison.md`: metric deltas per type and the questions
whose verdict changed, which is what a reviewer of a retrieval or prompt change wants to see first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from eval.harness import QuestionResult
from eval.metrics import (
    HEADLINE_METRICS,
    LATENCY_METRICS,
    OVERALL,
    GroupMetrics,
    aggregate,
    failure_reasons,
    failure_severity,
)
from rag import RagError

REPORT_MD = "report.md"
RESULTS_JSON = "results.json"
METRICS_PNG = "metrics_by_type.png"
LATENCY_PNG = "latency.png"
COMPARISON_MD = "comparison.md"

COLUMN_TITLES = {
    "n": "n",
    "accuracy": "correct",
    "fact_accuracy": "facts",
    "recall_at_k": "recall@k",
    "mrr": "MRR",
    "citation_validity": "cite valid",
    "cited_gold": "cites gold",
    "cited_supports_fact": "cited text has fact",
    "refusal_precision": "refusal P",
    "refusal_recall": "refusal R",
    "first_token_p50": "first token p50 s",
    "first_token_p95": "first token p95 s",
    "total_p50": "total p50 s",
    "total_p95": "total p95 s",
    "errors": "errors",
}
ANSWER_PREVIEW_CHARS = 700


class RunReport(BaseModel):
    """The content of `results.json`."""

    run: dict[str, Any] = Field(description="Header: mode, backend, k, settings hash and summary, counts, time.")
    metrics: dict[str, GroupMetrics] = Field(description="Per question type, plus 'overall'.")
    results: list[QuestionResult]


class ReportError(RagError):
    """A run folder to compare has no readable results.json."""


def build_report(run: dict[str, Any], results: Sequence[QuestionResult]) -> RunReport:
    return RunReport(run=run, metrics=aggregate([r.scored() for r in results]), results=list(results))


def write_report(out_dir: str | Path, report: RunReport, *, worst: int = 10, plots: bool = True) -> list[Path]:
    """Write results.json, report.md and (unless `plots` is False) the two PNG plots; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / RESULTS_JSON, out / REPORT_MD]
    (out / RESULTS_JSON).write_text(report.model_dump_json(indent=1), encoding="utf-8")
    (out / REPORT_MD).write_text(markdown_report(report, worst=worst), encoding="utf-8")
    if plots:
        written.append(plot_metrics(report.metrics, out / METRICS_PNG))
        written.append(plot_latency(report.results, out / LATENCY_PNG))
    return written


# --- markdown ---------------------------------------------------------------------------------------------
def fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def used_columns(metrics: dict[str, GroupMetrics]) -> list[str]:
    """Columns with a value somewhere: a retrieval-only run has no answer or first-token columns."""
    candidates = ["n", *HEADLINE_METRICS, *LATENCY_METRICS, "errors"]
    return [
        name
        for name in candidates
        if name in ("n", "errors") or any(getattr(group, name) is not None for group in metrics.values())
    ]


def metrics_table(metrics: dict[str, GroupMetrics]) -> str:
    """Markdown table: one row per question type, then the overall row in bold."""
    columns = used_columns(metrics)
    lines = [
        "| type | " + " | ".join(COLUMN_TITLES[name] for name in columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for group, values in metrics.items():
        cells = [fmt(getattr(values, name)) for name in columns]
        name = f"**{group}**" if group == OVERALL else group
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(report: RunReport, *, worst: int = 10) -> str:
    run = report.run
    k = run.get("k", "?")
    header = [
        f"# Eval report: {run.get('mode', 'answers')}, backend {run.get('backend', '?')}",
        "",
        f"- questions: {len(report.results)} ({run.get('questions_file', '?')}"
        + (", smoke set" if run.get("smoke") else "")
        + ")",
        f"- retrieved papers per question (k): {k}",
        f"- settings hash: `{run.get('settings_hash', '?')}`; code `{run.get('commit', '?')}`; "
        f"created {run.get('created', '?')}",
        f"- command: `{run.get('command', '')}`",
        *key_settings_line(run.get("settings") or {}),
        "",
        "## Metrics per question type",
        "",
        metrics_table(report.metrics),
        "",
        METRIC_LEGEND,
        "",
    ]
    return "\n".join(header + failures_section(report.results, int(k) if str(k).isdigit() else 5, worst))


KEY_SETTINGS = (
    "retrieval_mode",
    "top_k",
    "min_relevance",
    "model_size",
    "embedding_model",
    "temperature",
    "weak_source_margin",
)
"""Settings worth seeing in a report header (results.json has them all)."""


def key_settings_line(settings: dict[str, Any]) -> list[str]:
    shown = [f"{name}={settings[name]}" for name in KEY_SETTINGS if name in settings]
    return [f"- key settings: {', '.join(shown)}"] if shown else []


METRIC_LEGEND = """\
correct: facts present (answerable) or declined (unanswerable). facts: every `must_include` group found in the
answer (case-insensitive, any alternative). recall@k / MRR: gold papers among the retrieved papers (normalised
titles). cite valid: every `[n]` names a retrieved source. cites gold: share of cited papers that are gold.
cited text has fact: the cited papers' own text holds the facts. refusal P/R: declines vs unanswerable
questions. Latency in seconds from the call to the first streamed token / the final answer."""


def failures_section(results: Sequence[QuestionResult], k: int, worst: int) -> list[str]:
    failed = [(r, failure_reasons(r.verdicts, k)) for r in results]
    failed = [(r, reasons) for r, reasons in failed if reasons]
    failed.sort(key=lambda pair: failure_severity(pair[0].verdicts), reverse=True)
    lines = [f"## Worst failures ({min(worst, len(failed))} of {len(failed)} questions with a problem)", ""]
    if not failed:
        return [*lines, "None.", ""]
    for result, reasons in failed[:worst]:
        lines += [f"### `{result.id}` ({result.type})", "", f"**Q:** {result.question}", ""]
        if result.gold_titles:
            lines += ["**Gold:** " + "; ".join(result.gold_titles), ""]
        if result.answer is not None:
            answer = result.answer.strip().replace("\n", " ")
            if len(answer) > ANSWER_PREVIEW_CHARS:
                answer = answer[:ANSWER_PREVIEW_CHARS] + " …"
            lines += [f"**A:** {answer}", ""]
        if result.sources:
            retrieved = "; ".join(f"[{s.number}] {s.title}" for s in result.sources)
            lines += [f"**Retrieved:** {retrieved}", ""]
        lines += ["**Why it failed:** " + "; ".join(reasons), ""]
    return lines


# --- plots ------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(metrics: dict[str, GroupMetrics], path: str | Path) -> Path:
    """Grouped bar chart: each rate metric that applies, one bar per question type (and overall)."""
    plt = _pyplot()
    names = [name for name in HEADLINE_METRICS if any(getattr(g, name) is not None for g in metrics.values())]
    groups = list(metrics)
    fig, axis = plt.subplots(figsize=(max(8, 1.3 * len(names) + 2), 4.5))
    width = 0.8 / max(1, len(groups))
    for offset, group in enumerate(groups):
        values = [getattr(metrics[group], name) for name in names]
        positions = [i + offset * width for i in range(len(names))]
        axis.bar(positions, [v if v is not None else 0 for v in values], width, label=group)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
    axis.set_xticklabels([COLUMN_TITLES[name] for name in names], rotation=20, ha="right")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("rate")
    axis.set_title("Metrics per question type")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_latency(results: Sequence[QuestionResult], path: str | Path) -> Path:
    """Histogram of time to first token and total time per question."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 4))
    series = {
        "first token": [r.first_token for r in results if r.first_token is not None],
        "total": [r.total for r in results if r.total is not None],
    }
    for label, values in series.items():
        if values:
            axis.hist(values, bins=min(30, max(5, len(values) // 3)), alpha=0.6, label=label)
    axis.set_xlabel("seconds")
    axis.set_ylabel("questions")
    axis.set_title("Latency per question")
    if any(series.values()):
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# --- comparison -------------------------------------------------------------------------------------------
def load_run(run_dir: str | Path) -> RunReport:
    path = Path(run_dir) / RESULTS_JSON
    try:
        return RunReport.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no results.json (is this an eval run folder?).") from None
    except ValueError as error:
        raise ReportError(f"{path}: not a readable eval result ({str(error).splitlines()[0]}).") from None


def verdict_label(result: QuestionResult) -> str:
    """One word for a question's outcome, used to spot changes between runs."""
    v = result.verdicts
    if v.error:
        return "error"
    if v.correct is None:  # retrieval-only run
        return "n/a" if v.recall_at_k is None else ("hit" if v.recall_at_k > 0 else "miss")
    return "pass" if v.correct else "fail"


def comparison_markdown(a: RunReport, b: RunReport, name_a: str, name_b: str) -> str:
    lines = [
        f"# Comparison: A = `{name_a}`, B = `{name_b}`",
        "",
        f"- A: {a.run.get('mode')} / {a.run.get('backend')}, {len(a.results)} questions, "
        f"settings `{a.run.get('settings_hash')}`",
        f"- B: {b.run.get('mode')} / {b.run.get('backend')}, {len(b.results)} questions, "
        f"settings `{b.run.get('settings_hash')}`",
        "",
        "## Metric deltas (B − A) per question type",
        "",
        *delta_table(a.metrics, b.metrics),
        "",
        *changed_section(a.results, b.results),
    ]
    return "\n".join(lines)


def delta_table(a: dict[str, GroupMetrics], b: dict[str, GroupMetrics]) -> list[str]:
    """One row per (type, metric) that either run has: A, B and B − A."""
    groups = [g for g in a if g in b and g != OVERALL] + [OVERALL]
    lines = ["| type | metric | A | B | Δ |", "| --- | --- | ---: | ---: | ---: |"]
    for group in groups:
        for name in ("n", *HEADLINE_METRICS, *LATENCY_METRICS):
            value_a, value_b = getattr(a[group], name), getattr(b[group], name)
            if value_a is None and value_b is None:
                continue
            delta = value_b - value_a if value_a is not None and value_b is not None else None
            shown = "–" if delta is None else (f"{delta:+d}" if isinstance(delta, int) else f"{delta:+.2f}")
            lines.append(f"| {group} | {COLUMN_TITLES[name]} | {fmt(value_a)} | {fmt(value_b)} | {shown} |")
    return lines


def changed_verdicts(
    a: Sequence[QuestionResult], b: Sequence[QuestionResult]
) -> list[tuple[QuestionResult, QuestionResult]]:
    """Pairs (A, B) of the same question id whose verdict label differs, in B's order."""
    by_id = {r.id: r for r in a}
    return [(by_id[r.id], r) for r in b if r.id in by_id and verdict_label(by_id[r.id]) != verdict_label(r)]


def changed_section(a: Sequence[QuestionResult], b: Sequence[QuestionResult]) -> list[str]:
    changed = changed_verdicts(a, b)
    only_a = len({r.id for r in a} - {r.id for r in b})
    only_b = len({r.id for r in b} - {r.id for r in a})
    lines = [f"## Questions whose verdict changed ({len(changed)})", ""]
    if only_a or only_b:
        lines += [f"{only_a} questions only in A and {only_b} only in B are left out.", ""]
    if not changed:
        return [*lines, "None."]
    lines += ["| id | type | A | B | question |", "| --- | --- | --- | --- | --- |"]
    for before, after in changed:
        question = after.question.replace("|", "\\|")
        lines.append(f"| `{after.id}` | {after.type} | {verdict_label(before)} | {verdict_label(after)} | {question} |")
    return lines


def write_comparison(run_a: str | Path, run_b: str | Path, out_dir: str | Path | None = None) -> Path:
    """Compare two run folders; write comparison.md into `out_dir` (default: run B's folder)."""
    a, b = load_run(run_a), load_run(run_b)
    out = Path(out_dir) if out_dir else Path(run_b)
    out.mkdir(parents=True, exist_ok=True)
    path = out / COMPARISON_MD
    path.write_text(comparison_markdown(a, b, str(run_a), str(run_b)), encoding="utf-8")
    return path


def summary_line(metrics: dict[str, GroupMetrics]) -> str:
    """The overall figures as one line for the terminal."""
    overall = metrics[OVERALL]
    parts = [f"n={overall.n}"]
    for name in (*HEADLINE_METRICS, "total_p50", "first_token_p50"):
        value = getattr(overall, name)
        if value is not None:
            parts.append(f"{COLUMN_TITLES[name]}={value:.2f}")
    if overall.errors:
        parts.append(f"errors={overall.errors}")
    return ", ".join(parts)
