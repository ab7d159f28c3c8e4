"""Does the prompt hold the answer? Fact recall of the prompt the model sees, and its size, per question type.

    .venv/bin/python bench/context.py [--questions FILE ...] [--set answer_sources=4 --set context_words=120 ...]

For every answerable question of the eval set, this runs retrieval and the answer stage's source preparation
(`Answerer.prepare_sources` + `build_messages`) without calling the model, then checks each `must_include`
group against the user message. A fact the prompt lacks is one the model cannot state, so this is the ceiling
of fact accuracy for the current context settings, measured in seconds instead of a 20-minute model run; the
prompt's token count (the model's own tokenizer) is what prefill, and so time to first token, pays for.
A conversation's earlier turns are asked first with the extractive backend, so its follow-up is rewritten and
retrieved with the previous answer's papers in view, as in the chat (the model's own rewrite may differ).
Writes bench/results/context.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.harness import ask_history, load_questions  # noqa: E402
from eval.metrics import satisfies  # noqa: E402
from rag.answer import passage_focus  # noqa: E402
from rag.api import Bot  # noqa: E402
from rag.context import build_messages  # noqa: E402
from rag.injection import without_instructions  # noqa: E402
from rag.rewrite import papers_in_view, search_in_view  # noqa: E402
from rag.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "context.md"


def token_counter(settings: Settings):
    """Counts tokens with the default model's own vocabulary (llama.cpp, vocab only), else ~1.3 per word."""
    try:
        from llama_cpp import Llama

        from rag.models import generator_model_path

        vocab = Llama(model_path=str(generator_model_path(settings)), vocab_only=True, verbose=False)
        return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))
    except Exception:  # an estimate is enough when llama.cpp is missing
        return lambda text: round(1.3 * len(text.split()))


def measure(settings: Settings, paths: list[str], show_misses: bool = False) -> dict[str, dict[str, float]]:
    bot = Bot(settings.with_changes(backend="extractive"))
    count = token_counter(settings)
    per_type: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    questions = [question for path in paths for question in load_questions(path)]
    for question in questions:
        if question.type == "unanswerable":
            continue
        history = ask_history(bot, question.turns[:-1], k=settings.retrieval.top_k) if question.turns else []
        in_view = papers_in_view(question.question, history, bot.retriever, None, None)
        standalone = without_instructions(bot.answerer.standalone_question(question.question, history, in_view))
        sources = search_in_view(bot.retriever, standalone, question.question, in_view)
        focus = passage_focus(question.question, standalone)
        shown, _ = bot.answerer.prepare_sources(standalone, sources, focus=focus)
        messages = build_messages(standalone, shown, settings)
        user = messages[-1]["content"]
        found = satisfies(user, question.must_include)
        per_type[question.type].append((found, count(user)))
        if show_misses and not found:
            print(f"--- {question.id} {question.type}: {question.question}\n{user}\n")
    rows = {}
    everything = [item for items in per_type.values() for item in items]
    for name, items in [*sorted(per_type.items()), ("overall", everything)]:
        rows[name] = {
            "n": len(items),
            "facts_in_prompt": sum(ok for ok, _ in items) / len(items),
            "prompt_tokens_p50": statistics.median(tokens for _, tokens in items),
        }
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], help="a setting override, name=value")
    parser.add_argument(
        "--questions", action="append", help="a question set (JSONL; repeatable); default eval/questions.jsonl"
    )
    parser.add_argument("--misses", action="store_true", help="print the prompt of each question it misses")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings(**overrides)
    paths = args.questions or [str(ROOT / "eval" / "questions.jsonl")]
    rows = measure(settings, paths, args.misses)
    lines = [
        f"Prompt fact recall, answerable questions of {', '.join(Path(path).parent.name for path in paths)}; "
        f"overrides: {overrides or 'none'}",
        "",
        "| type | n | facts in prompt | user-message tokens p50 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {row['n']} | {row['facts_in_prompt']:.2f} | {row['prompt_tokens_p50']:.0f} |"
            for name, row in rows.items()
        ),
    ]
    print("\n".join(lines))
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
