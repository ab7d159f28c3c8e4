"""Corpus reading: both seed-page formats, duplicate merging, JSONL/CSV loaders, and broken input.

No models: everything here runs in well under a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.corpus import (
    ANOTHER_VERSION,
    CorpusLoad,
    load_corpus,
    merge_papers,
    merged_abstract,
    paper_id_for,
    parse_page,
    read_csv,
    read_file,
    read_jsonl,
    read_page,
)
from rag.errors import CorpusError
from rag.settings import BUNDLED_CORPUS_DIR
from rag.text import normalise_title, split_sentences
from rag.types import Paper

SESSION_PAGE = BUNDLED_CORPUS_DIR / "000_7e744d423e2c9d74.txt"
SESSION_PAGE_WITH_ROOM = BUNDLED_CORPUS_DIR / "003_1ff43d3df213116c.txt"
LISTING_DENSE = BUNDLED_CORPUS_DIR / "001_6546c1842171b361.txt"
LISTING_SPACED = BUNDLED_CORPUS_DIR / "002_34f04db391677b0e.txt"
LISTING_OTHER = BUNDLED_CORPUS_DIR / "004_e21b382c43c902c2.txt"

CHROME = (
    "Subscribe",
    "Get trending papers",
    "byAK",
    "Chat is not available",
    "Skip to",
    "Moderator",
    "Mar 14",
)

LONG = "This abstract is long enough to be told apart from a title. " * 8  # ~480 characters


def parse_file(path: Path) -> list[Paper]:
    return parse_page(path.read_text(encoding="utf-8"), path.name)


def all_text(paper: Paper) -> str:
    return " ".join([paper.title, paper.abstract, *paper.authors, paper.session or "", paper.room or ""])


def assert_no_chrome(papers: list[Paper]) -> None:
    for paper in papers:
        for chrome in CHROME:
            assert chrome not in all_text(paper), (chrome, paper.title)
        assert paper.title.strip() and paper.title != "new"


# --- session pages ------------------------------------------------------------------------------------------


def test_session_page_gives_one_paper_per_talk_with_session_metadata():
    papers = parse_file(SESSION_PAGE)

    assert len(papers) == 7
    vilt = papers[0]
    assert vilt.title == "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision"
    assert vilt.authors == ["Wonjae Kim", "Bokyung Son", "Ildoo Kim"]
    assert vilt.abstract.startswith("Vision-and-Language Pre-training (VLP) has improved performance")
    assert vilt.abstract.endswith("Our code and pre-trained weights are available at")  # cut short on the page
    assert vilt.session == "Deep Learning Algorithms 3"
    assert vilt.room is None  # this page prints no room
    assert vilt.moderator == "Razvan Pascanu"
    assert vilt.day == "Tue 20 July"
    assert vilt.time_slot == "7:00 - 7:20 PDT"
    assert vilt.year is None  # the page never prints a year
    assert vilt.sources == [SESSION_PAGE.name]
    assert_no_chrome(papers)


def test_session_page_trailing_time_slot_is_not_a_paper():
    papers = parse_file(SESSION_PAGE)

    assert papers[-1].title == "DeepWalking Backwards: From Embeddings Back to Graphs"
    assert papers[-1].time_slot == "7:45 - 7:50 PDT"
    assert "7:50 - 7:55 PDT" not in {paper.time_slot for paper in papers}


def test_session_page_with_room_line():
    papers = parse_file(SESSION_PAGE_WITH_ROOM)

    assert len(papers) == 15
    assert {paper.session for paper in papers} == {"Deep Learning"}
    assert {paper.room for paper in papers} == {"Ballroom 1 & 2"}
    assert {paper.moderator for paper in papers} == {"Guojun Zhang"}
    assert papers[0].title == "Bregman Neural Networks"
    assert papers[0].day == "Thu 21 July"
    assert papers[0].time_slot == "12:30 - 12:35 PDT"
    assert papers[0].authors == ["Jordan Frecon", "Gilles Gasso", "Massimiliano Pontil", "Saverio Salzo"]
    assert papers[-1].title == "AGNAS: Attention-Guided Micro- and Macro-Architecture Search"
    assert_no_chrome(papers)


def test_mojibake_author_name_is_repaired():
    papers = parse_file(SESSION_PAGE)
    intra_batch = next(paper for paper in papers if paper.title.startswith("Learning Intra-Batch"))

    assert intra_batch.authors[-1] == "Laura Leal-Taixé"  # the page holds the double-encoded "Leal-TaixĂ©"


def test_tex_escaped_characters_read_as_themselves(tmp_path):
    path = tmp_path / "papers.jsonl"
    path.write_text('{"title": "R\\\\&D at scale", "abstract": "It reaches 88.25\\\\% accuracy."}\n')
    (paper,) = read_file(path).papers
    assert (paper.title, paper.abstract) == ("R&D at scale", "It reaches 88.25% accuracy.")


def test_single_author_and_title_only_talk(tmp_path):
    page = "\n\n".join(
        [
            "Optimisation",
            "Moderator: Ada Lovelace",
            "Mon 3 May 9:00 - 9:05 PDT",
            "A Paper By One Person",
            "Grace Hopper",
            LONG,
            "Mon 3 May 9:05 - 9:10 PDT",
            "A Talk With Only A Title",
            "Mon 3 May 9:10 - 9:15 PDT",
        ]
    )
    path = tmp_path / "session.txt"
    path.write_text(page, encoding="utf-8")

    loaded = read_page(path)

    assert [paper.title for paper in loaded.papers] == ["A Paper By One Person"]
    assert loaded.papers[0].authors == ["Grace Hopper"]
    assert loaded.papers[0].abstract == LONG.strip()
    assert loaded.papers[0].moderator == "Ada Lovelace"
    assert len(loaded.problems) == 1
    assert loaded.problems[0].startswith(f"{path}:13: talk at 'Mon 3 May 9:05 - 9:10 PDT'")


# --- listing pages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "count", "first_title", "first_abstract_start"),
    [
        (LISTING_DENSE, 207, "Feature Pyramid Networks for Object Detection", "Feature pyramids are a basic"),
        (
            LISTING_SPACED,
            68,
            "Contrastive UCB: Provably Efficient Contrastive Self-Supervised Learning in Online Reinforcement Learning",
            "In view of its power in extracting feature representation",
        ),
        (
            LISTING_OTHER,
            217,
            "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning",
            "Deep metric learning, which learns discriminative features",
        ),
    ],
)
def test_listing_pages(path, count, first_title, first_abstract_start):
    papers = parse_file(path)

    assert len(papers) == count
    assert papers[0].title == first_title  # glued "Subscribe" removed from the first title
    assert papers[0].abstract.startswith(first_abstract_start)
    assert all(len(paper.abstract) > 300 and len(paper.title) < 300 for paper in papers)
    assert all(paper.session is None and paper.authors == [] for paper in papers)
    assert_no_chrome(papers)


def test_listing_parses_the_same_with_or_without_blank_lines():
    dense = "\n".join(["Subscribe", "First Title", LONG, "Second Title", LONG + "2"])
    spaced = "\n\n".join(["new", "Get trending papers in your email inbox!", "Mar 14", "First Title", LONG,
                          "Second Title", LONG + "2"])  # fmt: skip

    assert parse_page(dense, "a.txt") == parse_page(spaced, "a.txt")
    assert [paper.title for paper in parse_page(dense, "a.txt")] == ["First Title", "Second Title"]


def test_glued_chrome_is_stripped_only_before_the_first_abstract():
    page = "\n".join(["SubscribeFirst Title", LONG, "SubscribeNet: A Network Named So", LONG, "Subscriber Churn", LONG])

    titles = [paper.title for paper in parse_page(page, "a.txt")]

    assert titles == ["First Title", "SubscribeNet: A Network Named So", "Subscriber Churn"]


def test_listing_rhythm_breaks(tmp_path):
    page = "\n".join(
        [
            "Title With Short Abstract",
            "A short abstract.",
            "Title Without Abstract",
            "Title With Two Paragraphs",
            LONG,
            LONG + "second paragraph",
        ]
    )
    path = tmp_path / "listing.txt"
    path.write_text(page, encoding="utf-8")

    loaded = read_page(path)

    assert [paper.title for paper in loaded.papers] == [
        "Title With Short Abstract",
        "Title With Two Paragraphs",
    ]
    assert loaded.papers[0].abstract == "A short abstract."
    assert loaded.papers[1].abstract.endswith("second paragraph")
    assert loaded.problems == [f"{path}:3: title without an abstract, skipped: 'Title Without Abstract'"]


def test_text_that_is_not_a_paper_page_yields_nothing(tmp_path):
    path = tmp_path / "README.txt"
    path.write_text("Notes\nremember to ingest\nthe pages\n", encoding="utf-8")

    loaded = read_page(path)

    assert loaded.papers == []
    assert loaded.problems[0].startswith(f"{path}: no paper found")


# --- merging ------------------------------------------------------------------------------------------------


def test_bundled_corpus_counts_514_entries_and_469_unique_papers():
    corpus = load_corpus([BUNDLED_CORPUS_DIR])

    assert isinstance(corpus, CorpusLoad)
    assert corpus.entries == 514  # 7 + 207 + 68 + 15 + 217
    assert len(corpus.papers) == 469
    assert corpus.files == 5
    assert corpus.problems == []
    assert len({paper.id for paper in corpus.papers}) == 469
    assert len({normalise_title(paper.title) for paper in corpus.papers}) == 469


def test_bundled_duplicates_keep_every_source_and_the_longest_abstract():
    corpus = load_corpus([BUNDLED_CORPUS_DIR])
    by_title = {paper.title: paper for paper in corpus.papers}

    in_three = [paper for paper in corpus.papers if len(paper.sources) == 3]
    assert len(in_three) == 1
    assert sorted(in_three[0].sources) == sorted([LISTING_DENSE.name, LISTING_SPACED.name, LISTING_OTHER.name])
    listed_twice_on_one_page = parse_file(LISTING_DENSE)
    assert len(listed_twice_on_one_page) - len(merge_papers(listed_twice_on_one_page)) == 1
    fcn = by_title["Fully Convolutional Networks for Semantic Segmentation"]
    versions = [p for path in BUNDLED_CORPUS_DIR.glob("*.txt") for p in parse_file(path) if p.title == fcn.title]
    assert len({len(p.abstract) for p in versions}) == 2
    longest, shorter = sorted((p.abstract for p in versions), key=len, reverse=True)
    assert fcn.abstract.startswith(longest) and ANOTHER_VERSION in fcn.abstract
    assert all(" ".join(s.split()) in " ".join(fcn.abstract.split()) for s in split_sentences(shorter))


def test_a_second_version_of_an_abstract_adds_only_what_it_says_differently():
    longest = "We train a network. It reaches 67.2% on the test set. Inference takes 0.1 s."
    assert merged_abstract([longest, "We train a network. It reaches 67.2% on the"]) == longest  # a truncation
    assert merged_abstract([longest, longest, ""]) == longest
    merged = merged_abstract(["We train a network. It reaches 62.2% on the test set.", longest])
    assert merged == f"{longest}\n\n{ANOTHER_VERSION} It reaches 62.2% on the test set."


def test_merge_normalises_titles_and_unions_metadata():
    page_entry = Paper(
        id=paper_id_for("Poincaré ResNet"),
        title="Poincaré ResNet",
        abstract="the longer",
        authors=["Max van Spengler", "Erwin Berkhout"],
        sources=["a.txt"],
        session="Geometry",
        day="Tue 20 July",
    )
    listing_entry = Paper(
        id="other",
        title="  poincare   resnet. ",
        abstract="the longer abstract",
        authors=["MAX VAN SPENGLER", "Pascal Mettes"],
        sources=["b.txt", "a.txt"],
        room="Hall A",
        year=2023,
    )
    unrelated = Paper(id="x", title="Poincaré Embeddings", abstract="other", sources=["b.txt"])

    merged = merge_papers([page_entry, unrelated, listing_entry])

    assert [paper.title for paper in merged] == ["Poincaré ResNet", "Poincaré Embeddings"]
    paper = merged[0]
    assert paper.id == page_entry.id
    assert paper.abstract == "the longer abstract"
    assert paper.authors == ["Max van Spengler", "Erwin Berkhout", "Pascal Mettes"]
    assert paper.sources == ["a.txt", "b.txt"]
    assert (paper.session, paper.room, paper.day, paper.year) == ("Geometry", "Hall A", "Tue 20 July", 2023)


def test_paper_id_is_stable_and_ignores_case_and_punctuation():
    vilt = "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision"

    assert paper_id_for(vilt) == "vilt-vision-and-language-transformer-396a609451"
    assert paper_id_for(vilt.upper() + ".") == paper_id_for(vilt)
    assert paper_id_for("Another Title") != paper_id_for(vilt)
    assert paper_id_for("∑∑∑").startswith("paper-")


# --- JSONL and CSV ------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[object | str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_beir_layout(tmp_path):
    path = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {
                "_id": "d1",
                "title": "Dense Passage Retrieval",
                "text": "We retrieve passages.",
                "metadata": {"authors": ["V. Karpukhin"], "year": "2020"},
            },
            {
                "id": 7,
                "title": "BM25 Strikes Back",
                "abstract": "Lexical is fine.",
                "authors": "A · B",
                "session": "IR",
                "url": "ignored",
            },
            {"id": "d3", "title": "", "text": "A row without a title still counts. It has text."},
        ],
    )

    loaded = read_jsonl(path)

    first, second, third = loaded.papers
    assert (first.id, first.title, first.abstract) == (
        "d1",
        "Dense Passage Retrieval",
        "We retrieve passages.",
    )
    assert (first.authors, first.year, first.sources) == (["V. Karpukhin"], 2020, ["corpus.jsonl"])
    assert (second.id, second.abstract, second.authors, second.session) == (
        "7",
        "Lexical is fine.",
        ["A", "B"],
        "IR",
    )
    assert third.title == "A row without a title still counts."
    assert loaded.problems == [f"{path}: 1 row(s) with no title (lines 3); kept"]


def test_jsonl_broken_lines_are_reported_and_the_rest_kept(tmp_path):
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "a", "title": "Kept One", "text": "x"},
            "",
            '{"id": "b", "title": "Truncated" "text": ',
            "[1, 2]",
            {"id": "c", "title": 5.5, "text": {"nested": True}},
            {"id": "d", "title": "Kept Two", "text": "y", "year": "soon"},
        ],
    )

    loaded = read_jsonl(path)

    assert [paper.title for paper in loaded.papers] == ["Kept One", "Kept Two"]
    assert loaded.papers[1].year is None
    assert loaded.problems == [
        f"{path}:3: invalid JSON (Expecting ',' delimiter)",
        f"{path}:4: expected an object with title and text, got list",
        f"{path}:5: 'text' is dict, expected text",
        f"{path}: 1 row(s) with unreadable year (lines 6); kept",
    ]


def test_jsonl_duplicate_ids_with_different_titles_stay_distinct(tmp_path):
    path = write_jsonl(
        tmp_path / "dup.jsonl",
        [
            {"id": "1", "title": "First Paper", "text": "a"},
            {"id": "1", "title": "first paper", "text": "a longer text"},  # same paper: merged later
            {"id": "1", "title": "Second Paper", "text": "b"},
        ],
    )

    corpus = load_corpus([path])

    assert corpus.entries == 3
    assert [(paper.id, paper.title, paper.abstract) for paper in corpus.papers] == [
        ("1", "First Paper", "a longer text"),
        ("1-2", "Second Paper", "b"),
    ]
    assert corpus.problems == [f"{path}:3: id '1' already used by another title; kept as '1-2'"]


def test_ids_clashing_across_files_are_made_unique(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "title": "Alpha", "text": "a"}])
    second = write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "title": "Beta", "text": "b"}])

    corpus = load_corpus([first, second])

    assert [paper.id for paper in corpus.papers] == ["1", "1-2"]
    assert len(corpus.problems) == 1 and "b.jsonl" in corpus.problems[0]


def test_json_array_file(tmp_path):
    path = tmp_path / "papers.json"
    path.write_text(json.dumps([{"title": "One", "text": "a"}, "junk", {"title": "Two", "text": "b"}]))

    loaded = read_jsonl(path)

    assert [paper.title for paper in loaded.papers] == ["One", "Two"]
    assert loaded.papers[0].id == paper_id_for("One")
    assert loaded.problems == [f"{path}: item 2: expected an object with title and text, got str"]


def test_csv_loader(tmp_path):
    path = tmp_path / "papers.csv"
    path.write_text(
        'Title,Abstract,authors,year\n"Attention, Everywhere","Line one.\nLine two, with a comma.",'
        '"A; B",2019\n'
        "Second,Plain text.,,\n",
        encoding="utf-8",
    )

    loaded = read_csv(path)

    first, second = loaded.papers
    assert (first.title, first.abstract, first.authors, first.year) == (
        "Attention, Everywhere",
        "Line one.\nLine two, with a comma.",
        ["A", "B"],
        2019,
    )
    assert first.id == paper_id_for("Attention, Everywhere")
    assert (second.title, second.abstract, second.authors) == ("Second", "Plain text.", [])
    assert loaded.problems == []


def test_csv_bad_rows_are_reported_with_their_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('id,title,text\n1,Good,"multi\nline"\n2,Too,many,fields\n3,,\n4,Also Good,ok\n', encoding="utf-8")

    loaded = read_csv(path)

    assert [paper.title for paper in loaded.papers] == ["Good", "Also Good"]
    assert loaded.problems == [
        f"{path}:4: row has 4 fields, the header has 3",
        f"{path}:5: no title and no text",
    ]


def test_csv_missing_columns(tmp_path):
    path = tmp_path / "nocols.csv"
    path.write_text("name,body\nx,y\n", encoding="utf-8")

    loaded = read_csv(path)

    assert loaded.papers == []
    assert loaded.problems == [
        f"{path}:1: missing column(s) title, text (need title and text or abstract; found 'name', 'body')"
    ]


def test_semicolon_csv(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("title;text\nOne;First text, with comma\n", encoding="utf-8")

    assert [(p.title, p.abstract) for p in read_csv(path).papers] == [("One", "First text, with comma")]


# --- load_corpus: files, folders, broken input --------------------------------------------------------------


def test_wrong_encoding_is_decoded_and_reported(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("title,text\nCafé Networks,Résumé of “results”\n".encode("cp1252"))

    corpus = load_corpus([path])

    assert [(p.title, p.abstract) for p in corpus.papers] == [("Café Networks", "Résumé of “results”")]
    assert corpus.problems == [
        f"{path}:2: not valid UTF-8 (byte 0xe9); read as Windows-1252, check accented characters"
    ]


def test_mostly_utf8_file_keeps_its_utf8_characters(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps({"title": "Poincaré", "text": "Fréchet"}, ensure_ascii=False).encode()
    path.write_bytes(good + b"\n" + b'{"title": "Bad \xff byte", "text": "t"}\n')

    corpus = load_corpus([path])

    assert [p.title for p in corpus.papers] == ["Poincaré", "Bad \ufffd byte"]
    assert corpus.problems == [f"{path}:2: not valid UTF-8 (byte 0xff); read as UTF-8 with undecodable bytes replaced"]


def test_folder_walk_with_broken_and_empty_files(tmp_path):
    (tmp_path / "a_empty.jsonl").write_text("", encoding="utf-8")
    write_jsonl(tmp_path / "b.jsonl", [{"title": "From JSONL", "text": "x"}, "{broken"])
    (tmp_path / "c.csv").write_text("title,text\nFrom CSV,y\n", encoding="utf-8")
    (tmp_path / "d.txt").write_bytes(SESSION_PAGE.read_bytes())
    (tmp_path / "notes.md").write_text("not a corpus file", encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "a question?"}\n', encoding="utf-8")
    (tmp_path / "z.bin.txt").write_bytes(b"\x00\x01\x02binary")

    corpus = load_corpus(tmp_path)

    assert corpus.files == 5
    assert corpus.entries == 1 + 1 + 7
    assert [p.title for p in corpus.papers][:2] == ["From JSONL", "From CSV"]
    assert corpus.problems == [
        f"{tmp_path / 'queries.jsonl'}: skipped (BEIR queries, not papers)",
        f"{tmp_path / 'a_empty.jsonl'}: empty file",
        f"{tmp_path / 'b.jsonl'}:2: invalid JSON (Expecting property name enclosed in double quotes)",
        f"{tmp_path / 'z.bin.txt'}: looks like a binary file, not text; skipped",
    ]


def test_missing_path_raises_corpus_error(tmp_path):
    missing = tmp_path / "nope.jsonl"

    with pytest.raises(CorpusError, match=r"nope\.jsonl: no such file or folder"):
        load_corpus([BUNDLED_CORPUS_DIR, missing])


def test_unsupported_file_type_is_a_problem(tmp_path):
    path = tmp_path / "paper.pdf"
    path.write_bytes(b"%PDF-1.7")

    corpus = load_corpus([path])

    assert corpus.papers == [] and corpus.files == 1
    assert "unsupported file type '.pdf'" in corpus.problems[0]


def test_huge_abstract_is_kept_whole(tmp_path):
    huge = ("word " * 2_000_000).strip()  # ~10 MB
    write_jsonl(tmp_path / "huge.jsonl", [{"title": "Huge", "text": huge}])
    (tmp_path / "huge.csv").write_text(f"title,text\nHuge CSV,{huge}\n", encoding="utf-8")
    (tmp_path / "huge.txt").write_text(f"Huge Page\n{huge}\n", encoding="utf-8")

    corpus = load_corpus(tmp_path)

    assert corpus.problems == []
    assert [len(p.abstract) for p in corpus.papers] == [len(huge)] * 3


# --- never anything but CorpusError -------------------------------------------------------------------------

page_like_text = st.lists(
    st.one_of(
        st.text(max_size=80),
        st.sampled_from(["", "Tue 20 July 7:00 - 7:20 PDT", "Moderator: X", "Subscribe", "new", "A · B", LONG]),
    ),
    max_size=30,
).map("\n".join)


@given(page_like_text)
@settings(max_examples=200, deadline=None)
def test_parse_page_never_raises(text):
    papers = parse_page(text, "random.txt")

    assert all(paper.title.strip() and paper.id for paper in papers)


@given(
    data=st.one_of(st.binary(max_size=400), page_like_text.map(lambda text: text.encode("utf-8", "surrogatepass"))),
    suffix=st.sampled_from([".txt", ".jsonl", ".json", ".csv"]),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_load_corpus_never_raises_on_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)

    corpus = load_corpus([path])

    assert corpus.files == 1
    assert len({paper.id for paper in corpus.papers}) == len(corpus.papers)
    assert all("\n" not in problem for problem in corpus.problems)
