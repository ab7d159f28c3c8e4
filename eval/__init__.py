"""Evaluation of the bot: the question set, the harness that asks it, metrics, reports and run comparison.

    rag eval --smoke                 # or: python -m eval.cli --smoke

`eval.harness` runs questions through the public API (resumable), `eval.metrics` judges them (pure functions),
`eval.report` writes markdown/JSON/PNG reports and comparisons, `eval.retrieval` scores rankings (BEIR sets).
"""
