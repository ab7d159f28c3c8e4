"""`rag.benchmark_retrieval`: a test corpus ranked in its own collection, every mode on the same index."""

from __future__ import annotations

import pytest

from rag import Bot, ConfigError, benchmark_retrieval, benchmark_settings


def test_each_mode_ranks_every_query_on_an_index_apart_from_the_users(settings, papers):
    queries = ["robust SNR distance for deep metric learning", "feature pyramids with lateral connections"]
    run = benchmark_retrieval(papers, queries, settings, modes=("lexical", "hybrid"), k=3)
    assert set(run.modes) == {"lexical", "hybrid"}
    for mode in run.modes.values():
        assert [ranking[0] for ranking in mode.rankings] == ["snr-metric", "fpn"]
        assert len(mode.seconds) == len(queries) and all(seconds > 0 for seconds in mode.seconds)
    assert run.corpus_papers == 5 and sorted(run.indexed_ids) == sorted(paper.id for paper in papers)
    assert Bot(settings).index.count() == 0  # the user's collection was never written
    assert Bot(benchmark_settings(settings)).index.count() == run.chunks > 0


def test_an_unknown_mode_is_a_one_line_config_error_before_any_indexing(settings, papers):
    with pytest.raises(ConfigError, match=r"'sparse'.*hybrid, dense, lexical"):
        benchmark_retrieval(papers, ["query"], settings, modes=("hybrid", "sparse"))
    assert not (settings.data_dir / "bench").exists()
