"""Bibliography imports: the arXiv metadata snapshot, BibTeX, CSL-JSON, detection by content, entries without an
abstract, malformed entries, and the year / category filters they enable.

Fixtures are a few entries written into tmp_path; only the last tests open an index (tiny model, no LLM).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rag.corpus import load_corpus, paper_id_for
from rag.readers import (
    detect_format,
    latex_to_text,
    parse_bibtex,
    read_any,
    read_arxiv,
    read_bibtex,
    read_csl_json,
)
from rag.retrieve import matches_filters
from rag.types import Filters, Paper

ARXIV_RECORDS = [
    {
        "id": "0704.0001",
        "submitter": "Pavel Nadolsky",
        "authors": "C. Bal\\'azs, E. L. Berger, P. M. Nadolsky (SMU) and C.-P. Yuan",
        "title": "Calculation of prompt diphoton production cross sections at Tevatron and\n  LHC energies",
        "comments": "37 pages",
        "journal-ref": "Phys.Rev.D76:013009,2007",
        "categories": "hep-ph",
        "abstract": "  A fully differential calculation in perturbative quantum chromodynamics is\npresented.\n",
        "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"}],
        "update_date": "2008-11-13",
        "authors_parsed": [["Balázs", "C.", ""], ["Berger", "E. L.", ""]],
    },
    {
        "id": "2106.01345",
        "authors": "",
        "authors_parsed": [["Chen", "Lili", ""], ["Lu", "Kevin", ""]],
        "title": "Decision Transformer: Reinforcement Learning via Sequence Modeling",
        "categories": "cs.LG cs.AI",
        "abstract": "We frame reinforcement learning as conditional sequence modeling.",
        "update_date": "2021-06-24",
    },
    {"id": "2201.00001", "authors": "A. Nobody", "title": "Withdrawn", "categories": "cs.LG", "abstract": ""},
]

BIBTEX = r"""% Exported from Zotero
@string{neurips = "Advances in Neural Information Processing Systems"}
@comment{jabref-meta: databaseType:bibtex;}
@preamble{"\newcommand{\noop}[1]{}"}

@inproceedings{vaswani2017attention,
  title     = {Attention Is All You Need},
  author    = {Vaswani, Ashish and Shazeer, Noam and others},
  booktitle = neurips,
  year      = 2017,
  abstract  = "The dominant models are based on {recurrent} networks. We propose the {Transformer}."
}

@Article(muller2021,
  title        = {Sch{\"o}ne {\'E}tudes: Fa{\c{c}}ades of the Stra\ss e},
  author       = {M{\"u}ller, J{\"o}rg and Jean-Fran\c{c}ois Dupont and {Google Research}},
  journaltitle = {Journal} # { of } # "Tests",
  date         = {2021-05-03},
  abstract     = {Costs 5\% less \& runs --- fast; see \emph{this}.}
)

@misc{noabstract2019, title = {A Paper Without Its Abstract}, year = {2019}}
"""

CSL_ITEMS = [
    {
        "id": "http://zotero.org/users/local/abc/items/XYZ",
        "type": "article-journal",
        "title": "On <i>Deep</i> Networks",
        "abstract": "Deep networks generalise when they should not.",
        "author": [
            {"family": "Smith", "given": "Jane"},
            {"literal": "OpenAI"},
            {"family": "Beethoven", "given": "Ludwig", "non-dropping-particle": "van"},
        ],
        "issued": {"date-parts": [["2019", 5]]},
        "container-title": "Journal of Machine Learning Research",
    },
    {
        "id": "lee2020",
        "type": "paper-conference",
        "title": "Sparse Mixtures",
        "abstract": "Sparse experts.",
        "issued": {"raw": "2020-01"},
    },
    {"id": "no-abstract", "type": "book", "title": "A Book"},
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def arxiv_lines(records: list[dict]) -> str:
    return "\n".join(json.dumps(record) for record in records) + "\n"


def by_id(papers: list[Paper]) -> dict[str, Paper]:
    return {paper.id: paper for paper in papers}


# --- each format ---------------------------------------------------------------------------------------------


def test_arxiv_snapshot_fields(tmp_path):
    path = write(tmp_path / "arxiv-metadata.json", arxiv_lines(ARXIV_RECORDS))

    loaded = read_arxiv(path)

    papers = by_id(loaded.papers)
    first = papers["0704.0001"]
    assert first.title == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    assert first.abstract == "A fully differential calculation in perturbative quantum chromodynamics is presented."
    assert first.authors == ["C. Balázs", "E. L. Berger", "P. M. Nadolsky", "C.-P. Yuan"]
    assert (first.year, first.category, first.sources) == (2007, "hep-ph", ["arxiv-metadata.json"])
    second = papers["2106.01345"]
    assert second.authors == ["Lili Chen", "Kevin Lu"], "authors_parsed when the author string is empty"
    assert (second.year, second.category) == (2021, "cs.LG cs.AI"), "year from the id's YYMM without versions"
    assert set(papers) == {"0704.0001", "2106.01345"}


def test_bibtex_entries_strings_braces_quotes_and_accents(tmp_path):
    path = write(tmp_path / "library.bib", BIBTEX)

    loaded = read_bibtex(path)

    papers = by_id(loaded.papers)
    assert set(papers) == {"vaswani2017attention", "muller2021"}
    attention = papers["vaswani2017attention"]
    assert attention.title == "Attention Is All You Need"
    assert attention.abstract == "The dominant models are based on recurrent networks. We propose the Transformer."
    assert attention.authors == ["Ashish Vaswani", "Noam Shazeer"]
    assert (attention.year, attention.category) == (2017, "Advances in Neural Information Processing Systems")
    accented = papers["muller2021"]
    assert accented.title == "Schöne Études: Façades of the Straße"
    assert accented.authors == ["Jörg Müller", "Jean-François Dupont", "Google Research"]
    assert accented.abstract == "Costs 5% less & runs — fast; see this."
    assert (accented.year, accented.category) == (2021, "Journal of Tests")


def test_csl_json_items(tmp_path):
    path = write(tmp_path / "zotero.json", json.dumps(CSL_ITEMS, indent=1))

    loaded = read_csl_json(path)

    first, second = loaded.papers
    assert first.id == paper_id_for("On Deep Networks"), "a URL id is no paper id; the title gives one"
    assert first.title == "On Deep Networks"
    assert first.authors == ["Jane Smith", "OpenAI", "Ludwig van Beethoven"]
    assert (first.year, first.category) == (2019, "Journal of Machine Learning Research")
    assert (second.id, second.year, second.category) == ("lee2020", 2020, None)


def test_zotero_csv_export_columns(tmp_path):
    path = write(
        tmp_path / "zotero.csv",
        '"Key","Item Type","Publication Year","Author","Title","Publication Title","Abstract Note"\n'
        '"ABCD1234","journalArticle","2018","Doe, Jane; Roe, Rick","Graph Nets","Nature","Graphs everywhere."\n',
    )

    (paper,) = read_any(path).papers

    assert (paper.id, paper.title, paper.abstract, paper.year) == ("ABCD1234", "Graph Nets", "Graphs everywhere.", 2018)
    assert (paper.authors, paper.category) == (["Doe, Jane", "Roe, Rick"], "Nature")


def test_jsonl_rows_carry_a_category_and_an_odd_one_costs_nothing(tmp_path):
    rows = [
        {"id": "a", "title": "A", "text": "x", "categories": ["cs.LG", "stat.ML"]},
        {"id": "b", "title": "B", "text": "y", "venue": {"name": "not a string"}},
        {"id": "c", "title": "C", "text": "z", "journal": "Nature"},
    ]
    path = write(tmp_path / "rows.jsonl", arxiv_lines(rows))

    loaded = read_any(path)

    assert [(paper.id, paper.category) for paper in loaded.papers] == [
        ("a", "cs.LG stat.ML"),
        ("b", None),
        ("c", "Nature"),
    ]
    assert loaded.problems == []


@pytest.mark.parametrize(
    ("latex", "text"),
    [
        (r"G{\"o}del's {\'E}cole", "Gödel's École"),
        (r"\v{S}ediv\'{y} and Erd\H{o}s", "Šedivý and Erdős"),
        (r"na\"{\i}ve \c c", "naïve ç"),
        (r"Bj\o rn \AA{}ngstr\"om", "Bjørn Ångström"),
        (r"\textbf{Bold} {BERT} 50\% \$3 \{x\}", "Bold BERT 50% $3 {x}"),
        ("pages 1--2, ``quoted''", "pages 1–2, “quoted”"),
        (
            r"Runs in $\mathcal{O}(n^{2})$ time on {GPU}s, costs \$5",
            r"Runs in $\mathcal{O}(n^{2})$ time on GPUs, costs $5",
        ),
    ],
)
def test_latex_to_text(latex, text):
    assert latex_to_text(latex) == text


# --- detection by content ------------------------------------------------------------------------------------


def test_format_is_detected_from_the_content_not_the_name(tmp_path):
    cases = {
        "bibtex-export.txt": (BIBTEX, "bibtex"),
        "snapshot.txt": (arxiv_lines(ARXIV_RECORDS), "arxiv"),
        "zotero-export": (json.dumps(CSL_ITEMS), "csl"),
        "beir.json": ('{"_id": "1", "title": "T", "text": "x"}\n', "jsonl"),
        "table.txt": ("title,abstract\nT,x\n", "csv"),
        "page.txt": ("A Title\n" + "An abstract sentence. " * 20 + "\n", "page"),
        "notes.bib": ("nothing BibTeX-like", "bibtex"),  # content says nothing: the suffix decides
        "paper.pdf": ("%PDF-1.7", None),
    }
    for name, (text, expected) in cases.items():
        assert detect_format(write(tmp_path / name, text)) == expected, name


def test_a_txt_file_holding_bibtex_is_read_as_bibtex(tmp_path):
    path = write(tmp_path / "export.txt", BIBTEX)

    corpus = load_corpus([path])

    assert {paper.id for paper in corpus.papers} == {"vaswani2017attention", "muller2021"}
    assert corpus.missing_abstracts == 1


def test_folder_walk_reads_bib_files(tmp_path):
    write(tmp_path / "a.bib", BIBTEX)
    write(tmp_path / "b.jsonl", arxiv_lines(ARXIV_RECORDS))

    corpus = load_corpus(tmp_path)

    assert corpus.files == 2
    assert len(corpus.papers) == 4 and corpus.missing_abstracts == 2


# --- entries without an abstract, malformed entries ----------------------------------------------------------


def test_entries_without_an_abstract_are_counted_and_named(tmp_path):
    bib = read_bibtex(write(tmp_path / "lib.bib", BIBTEX))
    arxiv = read_arxiv(write(tmp_path / "snap.jsonl", arxiv_lines(ARXIV_RECORDS)))
    csl = read_csl_json(write(tmp_path / "items.json", json.dumps(CSL_ITEMS)))

    assert (bib.missing_abstracts, arxiv.missing_abstracts, csl.missing_abstracts) == (1, 1, 1)
    assert bib.problems == [f"{tmp_path / 'lib.bib'}: 1 entry without an abstract, not indexed (noabstract2019)"]
    assert arxiv.problems == [f"{tmp_path / 'snap.jsonl'}: 1 entry without an abstract, not indexed (2201.00001)"]
    assert csl.problems == [f"{tmp_path / 'items.json'}: 1 entry without an abstract, not indexed (no-abstract)"]


def test_jsonl_rows_without_text_are_counted_and_kept(tmp_path):
    path = write(
        tmp_path / "rows.jsonl", '{"id": "a", "title": "Only A Title"}\n{"id": "b", "title": "B", "text": "x"}\n'
    )

    corpus = load_corpus([path])

    assert [paper.id for paper in corpus.papers] == ["a", "b"]
    assert corpus.missing_abstracts == 1


def test_a_malformed_bibtex_entry_is_named_by_line_and_key_and_the_rest_is_read(tmp_path):
    text = (
        "@article{good1, title={First}, abstract={One.}}\n"
        "@article{broken2020,\n"
        "  title = {Unclosed {brace},\n"
        "  abstract = {Lost.}\n"
        "}\n"
        "@article{nofield, title {Missing equals}, abstract={x}}\n"
        "@article{ = {no key}}\n"
        "@article{good2, title={Second}, abstract={Two.}}\n"
    )
    path = write(tmp_path / "broken.bib", text)

    loaded = read_bibtex(path)

    assert [paper.id for paper in loaded.papers] == ["good1", "good2"]
    assert loaded.problems == [
        f"{path}:2: entry 'broken2020': no closing '}}' (unbalanced braces?)",
        f"{path}:6: entry 'nofield': field 'title' has no '='",
        f"{path}:7: missing citation key",
    ]


def test_malformed_arxiv_lines_and_csl_items_are_named(tmp_path):
    arxiv = write(tmp_path / "snap.jsonl", arxiv_lines(ARXIV_RECORDS[:1]) + '{"id": "9901.0001", "title": \n[1, 2]\n')
    csl = write(tmp_path / "items.json", json.dumps([CSL_ITEMS[1], "junk", {"id": "untitled", "abstract": "x"}]))

    assert read_any(arxiv).problems == [
        f"{arxiv}:2: invalid JSON (Expecting value)",
        f"{arxiv}:3: expected an arXiv record (a JSON object), got list",
    ]
    assert read_any(csl).problems == [
        f"{csl}: item 2: expected a CSL item (a JSON object), got str",
        f"{csl}: item 3: id 'untitled': no title, skipped",
    ]


def test_duplicate_citation_keys_for_different_papers_stay_distinct(tmp_path):
    text = "@article{k, title={Alpha}, abstract={a}}\n@article{k, title={Beta}, abstract={b}}\n"
    path = write(tmp_path / "dup.bib", text)

    loaded = read_bibtex(path)

    assert [paper.id for paper in loaded.papers] == ["k", "k-2"]
    assert loaded.problems == [f"{path}:2: id 'k' already used by another title; kept as 'k-2'"]


bib_fragments = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            ["@article{", "@string{", "@comment{", "@misc(", "key,", "title", " = ", "{", "}", '"', "#", ",", "\n"]
        ),
    ),
    max_size=40,
).map("".join)


@given(bib_fragments)
@hypothesis_settings(max_examples=300, deadline=None)
def test_parse_bibtex_never_raises(text):
    records, errors = parse_bibtex(text)

    assert all(isinstance(line, int) and line >= 1 for line, _, _ in records + errors)


@given(data=st.binary(max_size=300), kind=st.sampled_from(["[", "{", "@misc{", ""]))
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_reader_never_raises_on_random_bytes(tmp_path, data, kind):
    path = tmp_path / "random.bib"
    path.write_bytes(kind.encode() + data)

    corpus = load_corpus([path])

    assert corpus.files == 1
    assert all("\n" not in problem for problem in corpus.problems)


# --- year and category filters -------------------------------------------------------------------------------


def test_year_range_and_category_filters():
    paper = Paper(id="p", title="T", abstract="a", year=2019, category="cs.LG stat.ML")
    unknown = Paper(id="q", title="U", abstract="b")

    assert matches_filters(paper, Filters(year_from=2019, year_to=2019, category="STAT.ml"))
    assert not matches_filters(paper, Filters(year_from=2020))
    assert not matches_filters(paper, Filters(year_to=2018))
    assert not matches_filters(paper, Filters(category="cs.CV"))
    assert not matches_filters(unknown, Filters(year_from=1900)), "a range asks for a known year"
    assert matches_filters(unknown, Filters(author=None))


def test_cli_filter_flags_reach_the_filters():
    from rag.cli import _filters, build_parser

    args = build_parser().parse_args(
        ["search", "transformers", "--year-from", "2018", "--year-to", "2021", "--category", "cs.LG"]
    )

    assert _filters(args) == Filters(year_from=2018, year_to=2021, category="cs.LG")


def test_category_is_hashed_only_when_set(settings):
    """Indexes built before papers had a category keep their hashes (no re-embedding); a new category counts."""
    import hashlib

    from rag.index import SCHEMA_VERSION, content_hash

    paper = Paper(id="p", title="T", abstract="a", year=2020)
    before_the_field = {
        "paper": paper.model_dump(mode="json", exclude={"category"}),
        "chunk_chars": settings.index.chunk_chars,
        "overlap": settings.index.chunk_overlap_sentences,
        "schema": SCHEMA_VERSION,
    }
    old_hash = hashlib.sha256(json.dumps(before_the_field, sort_keys=True).encode()).hexdigest()[:32]

    assert content_hash(paper, settings) == old_hash
    assert content_hash(paper.model_copy(update={"category": "cs.LG"}), settings) != old_hash


@pytest.fixture(params=["lexical", "dense", "hybrid"])
def library_bot(request, settings, tmp_path):
    """A bot over a BibTeX file and an arXiv snapshot that share one topic, in different years and fields, in
    each retrieval mode (dense alone filters through Chroma's `where`, the others in Python)."""
    from rag import Bot

    topic = "Graph neural networks learn molecular property prediction from atoms and bonds."
    bib = "\n".join(
        f"@article{{gnn{year}, title = {{Molecular graph networks {year}}}, journal = {{{venue}}}, "
        f"year = {{{year}}}, abstract = {{{topic} Variant {year}.}}}}"
        for year, venue in ((2016, "Journal of Chemistry"), (2019, "Machine Learning Journal"))
    )
    snapshot = arxiv_lines(
        [
            {
                "id": f"{yymm}.0000{n}",
                "title": f"Graph networks for molecules, part {n}",
                "authors": "A. Author",
                "categories": category,
                "abstract": f"{topic} Part {n}.",
                "versions": [{"version": "v1", "created": f"Mon, 1 Jan {year} 00:00:00 GMT"}],
            }
            for n, (yymm, year, category) in enumerate((("2101", 2021, "cs.LG"), ("2201", 2022, "q-bio.BM")), 1)
        ]
    )
    bot = Bot(settings.with_changes(retrieval_mode=request.param))
    report = bot.ingest([write(tmp_path / "lib.txt", bib), write(tmp_path / "arxiv.jsonl", snapshot)])
    assert (report.papers, report.missing_abstracts) == (4, 0)
    yield bot
    bot.index.close()


def found(bot, **filters) -> set[str]:
    query = "graph neural networks molecular property prediction"
    return {source.paper_id for source in bot.search(query, k=10, filters=Filters(**filters))}


def test_year_and_category_filters_narrow_search_in_the_embedded_store(library_bot):
    assert found(library_bot) == {"gnn2016", "gnn2019", "2101.00001", "2201.00002"}
    assert found(library_bot, year_from=2019) == {"gnn2019", "2101.00001", "2201.00002"}
    assert found(library_bot, year_from=2017, year_to=2021) == {"gnn2019", "2101.00001"}
    assert found(library_bot, category="cs.lg") == {"2101.00001"}
    assert found(library_bot, category="journal") == {"gnn2016", "gnn2019"}
    assert found(library_bot, category="chemistry", year_from=2019) == set()
    stored = library_bot.index.papers()
    assert (stored["gnn2016"].year, stored["gnn2016"].category) == (2016, "Journal of Chemistry")


def test_ingest_reports_entries_without_an_abstract(settings, tmp_path):
    from rag import Bot

    bot = Bot(settings)
    report = bot.ingest([write(tmp_path / "lib.bib", BIBTEX)])
    bot.index.close()

    assert (report.papers, report.missing_abstracts) == (2, 1)
    assert any("without an abstract" in problem and "noabstract2019" in problem for problem in report.problems)
