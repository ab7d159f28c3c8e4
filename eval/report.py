"""Reports people read and files tools read: markdown summary, full JSON, plots, and run-to-run comparison.

A run folder holds `report.md` (summary table per question type, the worst failures with the reason each
failed), `results.json` (run header, metrics, every per-question result), `metrics_by_type.png` and
`latency.png`. Comparing two run folders writes `comparison.md`: metric deltas per type and the questions
whose verdict changed, which is what a reviewer of a retrieval or prompt change wants to see first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from eval.harness import QuestionResult, question_set_names
from eval.metrics import (
    COPY_SPAN_WORDS,
    HEADLINE_METRICS,
    LATENCY_METRICS,
    OVERALL,
    STYLE_METRICS,
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
SETS_JSON = "sets.json"
"""In a run over several question sets: the sets' names -> their run folders (relative), in order."""

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
    "forbidden_rate": "must-not hits",
    "words_p50": "words p50",
    "words_mean": "words mean",
    "copied_share": f"copied {COPY_SPAN_WORDS}-grams",
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
    candidates = ["n", *HEADLINE_METRICS, *STYLE_METRICS, *LATENCY_METRICS, "errors"]
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


METRIC_LEGEND = f"""\
correct: facts present (answerable) or declined (unanswerable). facts: every `must_include` group found in the
answer (case-insensitive, any alternative). recall@k / MRR: gold papers among the retrieved papers (normalised
titles). cite valid: every `[n]` names a retrieved source. cites gold: share of cited papers that are gold.
cited text has fact: the cited papers' own text holds the facts. refusal P/R: declines vs unanswerable
questions. must-not hits: questions with `must_not_include` whose answer says one of those strings (such an
answer is incorrect). words: per answer, declines left out. copied {COPY_SPAN_WORDS}-grams: mean share of an
answer's {COPY_SPAN_WORDS}-word spans (markers removed, lower-cased) found word for word in a retrieved paper's
abstract. Latency in seconds from the call to the first streamed token / the final answer; in a conversation, of
the scored (last) turn."""


def failures_section(results: Sequence[QuestionResult], k: int, worst: int) -> list[str]:
    failed = [(r, failure_reasons(r.verdicts, k)) for r in results]
    failed = [(r, reasons) for r, reasons in failed if reasons]
    failed.sort(key=lambda pair: failure_severity(pair[0].verdicts), reverse=True)
    lines = [f"## Worst failures ({min(worst, len(failed))} of {len(failed)} questions with a problem)", ""]
    if not failed:
        return [*lines, "None.", ""]
    for result, reasons in failed[:worst]:
        lines += [f"### `{result.id}` ({result.type})", ""]
        for turn, earlier in zip(result.earlier_turns, result.earlier_answers, strict=False):
            lines += [f"**Earlier Q:** {turn}", "", f"**Earlier A:** {_preview(earlier)}", ""]
        lines += [f"**Q:** {result.question}", ""]
        if result.gold_titles:
            lines += ["**Gold:** " + "; ".join(result.gold_titles), ""]
        if result.answer is not None:
            lines += [f"**A:** {_preview(result.answer)}", ""]
        if result.sources:
            retrieved = "; ".join(f"[{s.number}] {s.title}" for s in result.sources)
            lines += [f"**Retrieved:** {retrieved}", ""]
        lines += ["**Why it failed:** " + "; ".join(reasons), ""]
    return lines


def _preview(answer: str) -> str:
    answer = answer.strip().replace("\n", " ")
    return answer[:ANSWER_PREVIEW_CHARS] + " …" if len(answer) > ANSWER_PREVIEW_CHARS else answer


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
        for name in ("n", *HEADLINE_METRICS, *STYLE_METRICS, *LATENCY_METRICS):
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
    """Compare two run folders; write comparison.md into `out_dir` (default: run B's folder). Runs over several
    question sets (`write_sets_report`) are compared set by set, the sets side by side."""
    a_sets, b_sets = load_sets(run_a), load_sets(run_b)
    if len(a_sets) == 1 and len(b_sets) == 1:
        text = comparison_markdown(next(iter(a_sets.values())), next(iter(b_sets.values())), str(run_a), str(run_b))
    else:
        text = sets_comparison_markdown(a_sets, b_sets, str(run_a), str(run_b))
    out = Path(out_dir) if out_dir else Path(run_b)
    out.mkdir(parents=True, exist_ok=True)
    path = out / COMPARISON_MD
    path.write_text(text, encoding="utf-8")
    return path


# --- several question sets, side by side ------------------------------------------------------------------
SIDE_BY_SIDE_METRICS = (
    "n",
    "accuracy",
    "fact_accuracy",
    "recall_at_k",
    "refusal_precision",
    "refusal_recall",
    "forbidden_rate",
)
"""Per question type, each set's value next to the other's: what a change must not lose on either set."""
SET_OVERALL_METRICS = (
    "words_p50",
    "words_mean",
    "copied_share",
    "citation_validity",
    "cited_gold",
    "first_token_p50",
    "total_p50",
    "errors",
)
"""Per set, over all its questions: how answers read, citations and latency."""


def write_sets_report(out_dir: str | Path, reports: Mapping[str, RunReport], folders: Mapping[str, str]) -> Path:
    """A run over several question sets: `report.md` with the sets side by side, and `sets.json` naming each
    set's run folder (relative to `out_dir`), where its own report lives."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SETS_JSON).write_text(json.dumps({"sets": dict(folders)}, indent=1), encoding="utf-8")
    path = out / REPORT_MD
    path.write_text(sets_markdown(reports, folders), encoding="utf-8")
    return path


def load_sets(run_dir: str | Path) -> dict[str, RunReport]:
    """The runs of a folder by question set: each set of a several-set run, or the one run of a plain folder
    (named after its question file)."""
    run_dir = Path(run_dir)
    listing = run_dir / SETS_JSON
    if listing.exists():
        try:
            folders = json.loads(listing.read_text(encoding="utf-8"))["sets"]
        except (ValueError, KeyError, TypeError) as error:
            raise ReportError(f"{listing}: not a readable list of question sets ({error}).") from None
        return {name: load_run(run_dir / folder) for name, folder in folders.items()}
    run = load_run(run_dir)
    source = run.run.get("questions_file")
    return {question_set_names([source])[0] if source else run_dir.name: run}


def side_by_side_table(metrics_by_set: Mapping[str, Mapping[str, GroupMetrics]], columns: Sequence[str]) -> list[str]:
    """One row per question type (any set's, overall last); for each metric, one column per set side by side."""
    groups = [g for m in metrics_by_set.values() for g in m if g != OVERALL]
    groups = [*dict.fromkeys(groups), OVERALL]
    used = [
        name
        for name in columns
        if any(getattr(group, name) is not None for metrics in metrics_by_set.values() for group in metrics.values())
    ]
    titles = [f"{COLUMN_TITLES[name]} {set_name}" for name in used for set_name in metrics_by_set]
    lines = ["| type | " + " | ".join(titles) + " |", "| --- | " + " | ".join("---:" for _ in titles) + " |"]
    for group in groups:
        cells = [
            fmt(getattr(metrics[group], name)) if group in metrics else "–"
            for name in used
            for metrics in metrics_by_set.values()
        ]
        label = f"**{group}**" if group == OVERALL else group
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def set_overall_table(metrics_by_set: Mapping[str, Mapping[str, GroupMetrics]]) -> list[str]:
    """One row per set: SET_OVERALL_METRICS over all its questions."""
    lines = [
        "| set | " + " | ".join(COLUMN_TITLES[name] for name in SET_OVERALL_METRICS) + " |",
        "| --- | " + " | ".join("---:" for _ in SET_OVERALL_METRICS) + " |",
    ]
    for set_name, metrics in metrics_by_set.items():
        cells = [fmt(getattr(metrics[OVERALL], name)) for name in SET_OVERALL_METRICS]
        lines.append(f"| {set_name} | " + " | ".join(cells) + " |")
    return lines


def sets_markdown(reports: Mapping[str, RunReport], folders: Mapping[str, str]) -> str:
    first = next(iter(reports.values())).run
    lines = [
        f"# Eval report: {first.get('mode', 'answers')} over {len(reports)} question sets, "
        f"backend {first.get('backend', '?')}",
        "",
    ]
    for name, report in reports.items():
        source = report.run.get("questions_file", "?")
        smoke = ", smoke set" if report.run.get("smoke") else ""
        lines.append(
            f"- {name}: {len(report.results)} questions ({source}{smoke}); [report]({folders[name]}/{REPORT_MD})"
        )
    lines += [
        f"- retrieved papers per question (k): {first.get('k', '?')}",
        f"- settings hash: `{first.get('settings_hash', '?')}`; code `{first.get('commit', '?')}`; "
        f"created {first.get('created', '?')}",
        f"- command: `{first.get('command', '')}`",
        *key_settings_line(first.get("settings") or {}),
        "",
        "## Per question type, the sets side by side",
        "",
        *side_by_side_table({name: report.metrics for name, report in reports.items()}, SIDE_BY_SIDE_METRICS),
        "",
        "## Per set: length, copying, citations, latency",
        "",
        *set_overall_table({name: report.metrics for name, report in reports.items()}),
        "",
        METRIC_LEGEND,
        "",
    ]
    return "\n".join(lines)


COMPARED_OVERALL = (
    "accuracy",
    "fact_accuracy",
    "refusal_precision",
    "refusal_recall",
    "forbidden_rate",
    "words_p50",
    "copied_share",
    "first_token_p50",
    "total_p50",
)
"""The overall figures a comparison of several-set runs shows first, set by set."""


def sets_comparison_markdown(
    a_sets: Mapping[str, RunReport], b_sets: Mapping[str, RunReport], name_a: str, name_b: str
) -> str:
    """Set by set: the overall figures and correctness per type of A and B side by side, then each set's full
    comparison. A change is worth keeping when it helps on every set."""
    common = [name for name in b_sets if name in a_sets]
    lines = [f"# Comparison: A = `{name_a}`, B = `{name_b}`", ""]
    only = sorted(set(a_sets) ^ set(b_sets))
    if only:
        lines += [f"Sets in only one run, left out: {', '.join(only)}.", ""]
    if not common:
        return "\n".join([*lines, "No question set in common."])
    lines += ["## Overall, the sets side by side", "", *_ab_header("metric", common)]
    for metric in COMPARED_OVERALL:
        cells = [_delta_cells(a_sets[name].metrics[OVERALL], b_sets[name].metrics[OVERALL], metric) for name in common]
        lines.append(f"| {COLUMN_TITLES[metric]} | " + " | ".join(cells) + " |")
    groups = [*dict.fromkeys(g for name in common for g in b_sets[name].metrics if g != OVERALL), OVERALL]
    lines += ["", "## Correct per question type, the sets side by side", "", *_ab_header("type", common)]
    for group in groups:
        cells = [
            _delta_cells(a_sets[name].metrics.get(group), b_sets[name].metrics.get(group), "accuracy")
            for name in common
        ]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    for name in common:
        a, b = a_sets[name], b_sets[name]
        lines += [
            "",
            f"## Set `{name}`: metric deltas (B − A) per question type",
            "",
            *delta_table(a.metrics, b.metrics),
        ]
        lines += ["", *[line.replace("## ", f"### {name}: ", 1) for line in changed_section(a.results, b.results)]]
    return "\n".join(lines)


def _ab_header(first: str, sets: Sequence[str]) -> list[str]:
    return [
        f"| {first} | " + " | ".join(f"{name} A | {name} B | {name} Δ" for name in sets) + " |",
        "| --- | " + " | ".join("---: | ---: | ---:" for _ in sets) + " |",
    ]


def _delta_cells(a: GroupMetrics | None, b: GroupMetrics | None, metric: str) -> str:
    value_a = getattr(a, metric) if a is not None else None
    value_b = getattr(b, metric) if b is not None else None
    delta = f"{value_b - value_a:+.2f}" if value_a is not None and value_b is not None else "–"
    return f"{fmt(value_a)} | {fmt(value_b)} | {delta}"


def summary_line(metrics: dict[str, GroupMetrics]) -> str:
    """The overall figures as one line for the terminal."""
    overall = metrics[OVERALL]
    parts = [f"n={overall.n}"]
    for name in (*HEADLINE_METRICS, *STYLE_METRICS, "total_p50", "first_token_p50"):
        value = getattr(overall, name)
        if value is not None:
            parts.append(f"{COLUMN_TITLES[name]}={value:.2f}")
    if overall.errors:
        parts.append(f"errors={overall.errors}")
    return ", ".join(parts)
