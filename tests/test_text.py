"""The text helpers of rag/text.py: each parameter changes what its callers rely on, and the defaults stay."""

from __future__ import annotations

import pytest

from rag.text import (
    acronym_definitions,
    acronyms_in,
    agreed_long_forms,
    as_words,
    clock_times,
    described_alternatives,
    expand_acronyms,
    figures_in,
    is_coined,
    key_terms,
    normalise_title,
    numbers_in,
    question_parts,
    sentences_within,
    short_name,
    slot_end,
    slot_start,
    split_prose,
    split_sentences,
    start_minute,
    states_quantity,
)


def test_split_prose_splits_before_what_may_open_a_sentence():
    text = 'XNet is fast. [3] reports more. It (mostly) works. "Quoted" text follows.'
    assert split_prose(text) == ["XNet is fast.", "[3] reports more.", "It (mostly) works.", '"Quoted" text follows.']
    # the sentence reranker does not split before a bracket or a quote
    assert split_prose(text, next_start="[A-Z0-9(]") == [
        "XNet is fast. [3] reports more.",
        'It (mostly) works. "Quoted" text follows.',
    ]
    assert split_prose("see e.g. the results. and more") == ["see e.g. the results. and more"]
    assert split_prose("see e.g. the results. and more", next_start=None) == ["see e.g.", "the results.", "and more"]
    assert split_prose("") == []


def test_split_sentences_keeps_abbreviations_and_moves_late_markers_inside():
    text = "XNet, e.g. Fig. 3, is fast. [1] J. Smith et al. show more.\n- A bullet [2]"
    assert split_sentences(text) == ["XNet, e.g. Fig. 3, is fast [1].", "J. Smith et al. show more.", "A bullet [2]"]


def test_sentences_within_collapses_spaces_and_cuts_long_sentences_at_spaces():
    assert sentences_within("One  two.\nThree four five six seven.", max_chars=12) == [
        "One two.",
        "Three four",
        "five six",
        "seven.",
    ]


def test_key_terms_styles_differ_as_their_callers_rely_on():
    text = "Training 3d networks [2] uses sources"
    assert key_terms(text) == {"train", "network"}  # overlap: markers out, -ing cut, 'sources' a stopword
    assert key_terms(text, style="extractive") == {"training", "3d", "network", "use", "source"}
    assert key_terms("What are the Networks of ViLT?", style="extractive") == {"network", "vilt"}


def test_numbers_and_figures():
    assert numbers_in("1,000 images at 7.0 fps with 3 × 3 kernels on Set10 [2]") == {"1000", "7", "3x3"}
    assert figures_in("Set-10 reaches 82.5%") == {"82.5"}
    assert numbers_in("Set-10 reaches 82.5%") == {"10", "82.5"}


@pytest.mark.parametrize(
    ("text", "figures"),
    [
        ("Three parts: (1) a teacher; (2) a student; (3) a schedule.", set()),
        ("1) a teacher\n2) a student", set()),
        ("It gains 2 points (from 70 to 72) on 1,000 classes.", {"2", "70", "72", "1000"}),
    ],
)
def test_list_labels_are_not_figures(text, figures):
    assert figures_in(text) == figures


def test_normalise_title_folds_accents_unless_asked_not_to():
    assert (
        normalise_title("Über  Networks: A Study.")
        == normalise_title("uber networks - a study")
        == "uber networks a study"
    )
    assert normalise_title("José Núñez", fold_accents=False) == "josé núñez"
    assert as_words("Jane Doe") in as_words("Did Jane Doe moderate?")
    assert as_words("Jane Do") not in as_words("Did Jane Doe moderate?")
    assert short_name("XNet: A Long Subtitle") == "XNet"
    assert short_name("A Title Of Five Words: Sub") == "A Title Of Five Words: Sub"


def test_clock_times_read_a_slot_start_not_a_range_end():
    slot = "Thu 21 July, 13:05 - 13:25 PDT"
    assert clock_times(slot) == {(13, 5)}
    assert slot_start(slot) == "13:05"
    assert slot_end(slot) == "13:25"
    assert slot_end("13:05 PDT") == "13:05" and slot_end(None) is None
    assert start_minute(slot) == 13 * 60 + 5
    assert start_minute(None) is None and slot_start("") is None


def test_is_coined():
    assert is_coined("XNet") and is_coined("Zeta9")
    assert not is_coined("Net") and not is_coined("Sparse") and not is_coined("X Net")


@pytest.mark.parametrize(
    ("question", "count"),
    [
        ("Which model came out best and what test accuracy did it reach?", 2),
        ("How many parameters did it have, and on roughly how many benchmarks was it evaluated?", 2),
        ("Is there more than one such paper? What does each do?", 2),
        ("Which model predicts depth from stereo? pretty sure it came out in 2018", 1),  # a remark asks nothing
        ("Which datasets (CIFAR? CUB?) does it use?", 1),  # bracketed asides are not parts
        ("How does it compare to the baseline and why?", 1),  # a one-word piece is not a part
        ("What does XNet do?", 1),
    ],
)
def test_question_parts_counts_the_things_asked(question, count):
    assert len(question_parts(question)) == count


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "Which papers cluster soil samples, one with a spectral loss and the other using labelled pairs?",
            [
                "Which papers cluster soil samples: with a spectral loss",
                "Which papers cluster soil samples: using labelled pairs",
            ],
        ),
        (
            "How do these trials differ: the one that doses weekly, and the one that doses daily?",
            ["How do these trials differ: doses weekly", "How do these trials differ: doses daily"],
        ),
        (
            "Which studies explain why fasting works: through ketosis, through autophagy, or by arguing it's calories?",
            [
                "Which studies explain why fasting works: through ketosis",
                "Which studies explain why fasting works: through autophagy",
                "Which studies explain why fasting works: by arguing it's calories",
            ],
        ),
        (
            "Which works train a network that outputs weights, either to rank designs or to initialise new ones?",
            [
                "Which works train a network that outputs weights: to rank designs",
                "Which works train a network that outputs weights: to initialise new ones",
            ],
        ),
        (
            "Which codec papers are here? I'm after one that compresses logs and one that decodes in one pass.",
            ["Which codec papers are here: compresses logs", "Which codec papers are here: decodes in one pass"],
        ),
        ("Which papers fuse two networks in one forward pass?", []),  # "one" inside a phrase lists nothing
        ("Which papers study sleep: what does each find?", []),  # a question after the colon is not a list
    ],
)
def test_described_alternatives_splits_a_question_that_describes_its_papers_one_by_one(question, expected):
    assert described_alternatives(question) == expected


def test_acronym_definitions_find_the_long_form_in_any_field():
    assert acronym_definitions("Graph neural networks (GNNs) learn on graphs.") == [("GNN", "Graph neural networks")]
    assert acronym_definitions("We use Long Short-Term Memory (LSTM) cells and a bag of words (BoW).") == [
        ("LSTM", "Long Short-Term Memory"),
        ("BoW", "bag of words"),
    ]
    assert acronym_definitions("Serum interleukin 6 (IL-6) rose in treated mice.") == [("IL-6", "interleukin 6")]
    # only the words that spell it, not the clause before them
    assert acronym_definitions("In this work, we propose a Deep Adaptive Graph Neural Network (DAGNN) to") == [
        ("DAGNN", "Deep Adaptive Graph Neural Network")
    ]


def test_acronym_definitions_ignore_brackets_that_define_nothing():
    assert acronym_definitions("Results improve (Table 2) over ResNet (He et al.) and (see Fig. 3).") == []
    assert acronym_definitions("Smith et al. (ABC) reported it.") == []  # the letters are not there
    assert acronym_definitions("A Transformer (TF) model.") == []  # one word expands nothing


def test_agreed_long_forms_keep_what_most_texts_say_and_drop_ambiguous_acronyms():
    definitions = [
        [("GNN", "Graph neural networks")],
        [("GNN", "graph  neural networks"), ("GNN", "graph neural networks")],  # one text counts once
        [("GNN", "generative neural nets")],
        [("SR", "super resolution")],
        [("SR", "speech recognition")],
    ]
    assert agreed_long_forms(definitions) == {"GNN": "graph neural networks"}


def test_expand_acronyms_adds_the_long_form_once_unless_it_is_spelled_out():
    forms = {"GNN": "graph neural networks", "CNN": "convolutional neural networks"}
    assert expand_acronyms("Why do GNNs fail when GNNs grow deep?", forms) == (
        "Why do GNNs (graph neural networks) fail when GNNs grow deep?"
    )
    assert expand_acronyms("Graph neural networks (GNNs) vs. RNNs", forms) == "Graph neural networks (GNNs) vs. RNNs"
    assert expand_acronyms("a CNN-based model", forms) == "a CNN-based model"  # a compound is its own name
    assert acronyms_in("GNNs, BoW, IL-6 and CNNs; not A or Net") == ["GNN", "BoW", "IL-6", "CNN"]


@pytest.mark.parametrize(
    ("sentence", "states"),
    [
        ("XNet trains 160 sub-models at once [1].", True),
        ("It is up to tens of times faster [2].", True),
        ("It halves the memory; twice as fast.", True),
        ("XNet replaces the decoder [1].", False),
    ],
)
def test_states_quantity_reads_numbers_in_digits_or_words(sentence, states):
    assert states_quantity(sentence) is states
