"""The chat's rendering and turn logic, without a browser: escaping, citation links, panels, export, Stop."""

from __future__ import annotations

import copy
import itertools
import threading

import pytest

from rag import Answer, Citation, Filters, Paper, QuestionError, Settings, Source
from ui import render
from ui.fake import FakeBot

EVIL_TITLE = "Evil <script>alert(1)</script> networks"
EVIL_ABSTRACT = 'Convolution <img src=x onerror="alert(2)"> and <script>alert(3)</script> for vision.'


def source(number: int, paper: Paper, score: float = 0.5, passage: str = "") -> Source:
    return Source(number=number, paper=paper, score=score, dense_score=score, passage=passage)


@pytest.fixture
def evil_paper() -> Paper:
    return Paper(
        id="evil",
        title=EVIL_TITLE,
        abstract=EVIL_ABSTRACT,
        authors=["Mallory <b>Bold</b>"],
        sources=["evil<1>.txt"],
        session="Session <i>X</i>",
    )


@pytest.fixture
def answer(papers, evil_paper) -> Answer:
    vilt, fpn = papers[1], papers[2]
    sources = [source(1, vilt, 0.9, "ViLT is fast."), source(2, evil_paper, 0.5), source(3, fpn, 0.1)]
    return Answer(
        question="How is <b>ViLT</b> fast?",
        text="ViLT drops convolutions [1]. It is <script>alert(4)</script> fast [1, 2]. Bogus [7].",
        citations=[
            Citation(number=1, paper_id=vilt.id, title=vilt.title),
            Citation(number=2, paper_id=evil_paper.id, title=evil_paper.title),
        ],
        sources=sources,
        backend="extractive",
        timings={"total": 1.25},
    )


def assert_no_raw_markup(html: str) -> None:
    for raw in ("<script", "<img", "<b>", "<i>", 'onerror="'):
        assert raw not in html, f"unescaped {raw!r} in {html!r}"


# --- rendering ------------------------------------------------------------------------------------
def test_answer_links_each_valid_citation_to_its_source_entry_and_escapes_text(answer):
    html = render.render_answer(answer, turn=3)

    assert html.count('href="#src-3-1"') == 2  # [1] and the first number of [1, 2]
    assert html.count('href="#src-3-2"') == 1
    assert "[7]" in html and "#src-3-7" not in html  # a number with no source stays plain text
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in html
    assert_no_raw_markup(html.replace('<a class="cite"', "").replace("</a>", ""))


def test_citation_link_titles_are_escaped_attributes(answer):
    html = render.render_answer(answer, turn=1)
    assert 'title="Evil &lt;script&gt;alert(1)&lt;/script&gt; networks"' in html


def test_sources_panel_opens_cited_papers_and_collapses_the_rest(answer):
    html = render.render_sources_panel([(1, answer)])

    cited_part, uncited_part = html.split("<details", 1)
    assert 'id="src-1-1"' in cited_part and 'id="src-1-2"' in cited_part
    assert 'id="src-1-3"' in uncited_part and "1 more retrieved, not cited" in uncited_part
    assert "Feature Pyramid Networks" in uncited_part


def test_sources_panel_shows_metadata_and_the_passage_used(answer):
    html = render.render_sources_panel([(1, answer)])

    assert "Wonjae Kim, Bokyung Son and Ildoo Kim" in html
    assert "Deep Learning Algorithms 3" in html and "Razvan Pascanu" in html
    assert "Tue 20 July 7:00 - 7:20 PDT" in html and "000.txt" in html
    assert "ViLT is fast." in html  # the passage, not the whole abstract
    assert "score 0.900" in html


def test_sources_panel_escapes_every_corpus_field(answer):
    html = render.render_sources_panel([(1, answer)])

    assert_no_raw_markup(html)
    assert "Evil &lt;script&gt;alert(1)&lt;/script&gt; networks" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "Mallory &lt;b&gt;Bold&lt;/b&gt;" in html
    assert "evil&lt;1&gt;.txt" in html and "Session &lt;i&gt;X&lt;/i&gt;" in html
    assert "How is &lt;b&gt;ViLT&lt;/b&gt; fast?" in html


def test_sources_panel_keeps_earlier_turns_collapsed_but_linkable(answer):
    later = answer.model_copy(update={"question": "second"})
    html = render.render_sources_panel([(1, answer), (2, later)])

    assert html.index('id="src-2-1"') < html.index('id="src-1-1"')  # newest first
    assert '<details class="turn earlier"><summary>Q1:' in html


def test_declined_answer_says_so_and_lists_the_closest_papers(answer):
    declined = answer.model_copy(update={"declined": True, "citations": [], "text": "Not in the papers."})

    message = render.render_answer(declined, turn=1)
    panel = render.render_sources_panel([(1, declined)])

    assert "does not answer this question" in message and "3 closest papers" in message
    assert "Closest papers" in panel and '<details class="uncited"' not in panel
    assert all(f'id="src-1-{n}"' in panel for n in (1, 2, 3))


def test_error_is_one_escaped_line():
    html = render.render_error("Index missing: <run> rag ingest\nTraceback (most recent call last):")
    assert "Traceback" not in html
    assert "Index missing: &lt;run&gt; rag ingest" in html


def test_answer_footer_has_backend_time_count_and_copy_link(answer):
    footer = render.answer_footer(answer, turn=2)
    assert "extractive · 1.2 s · 2 papers cited" in footer or "extractive · 1.3 s · 2 papers cited" in footer
    assert 'href="#copy-2"' in footer


def test_authors_are_shortened_after_six():
    assert render.format_authors([f"A{i}" for i in range(9)]) == "A0, A1, A2, A3, A4, A5 et al."
    assert render.format_authors(["Ann"]) == "Ann"
    assert render.format_authors([]) == ""


# --- export ---------------------------------------------------------------------------------------
def test_conversation_export_has_questions_answers_and_references(answer):
    stopped = ("Cut short?", None, "Half an ans")
    markdown = render.conversation_markdown([(answer.question, answer, answer.text), stopped])

    assert markdown.startswith("# Conversation")
    assert "## Q1: How is \\<b\\>ViLT\\</b\\> fast?" in markdown
    assert "It is \\<script\\>alert(4)\\</script\\> fast [1, 2]." in markdown
    assert "**References**" in markdown
    assert "- [1] ViLT: Vision-and-Language Transformer" in markdown
    assert "[2] Evil \\<script\\>alert(1)\\</script\\> networks." in markdown
    assert "Feature Pyramid" not in markdown  # retrieved but not cited
    assert "## Q2: Cut short?" in markdown and "Half an ans" in markdown
    assert "<script>" not in markdown


# --- the chat turn, driven with a fake bot --------------------------------------------------------
def ready_warmup(bot):
    from ui.app import Warmup

    warmup = Warmup(bot).start()
    assert warmup.ready.wait(5)
    return warmup


@pytest.fixture
def fake_bot(papers, evil_paper) -> FakeBot:
    return FakeBot([*papers, evil_paper], Settings(backend="extractive"))


def run_turn(bot, question, chat=(), turns=(), k=3, filters=None):
    from ui.app import chat_turn

    return snapshots(chat_turn(bot, ready_warmup(bot), question, list(chat), list(turns), k, filters or Filters()))


def snapshots(turn):
    """Copies of each yielded state: the turn updates its lists in place, as Gradio sends each one at once."""
    return [copy.deepcopy(state) for state in turn]


def test_chat_turn_streams_growing_text_then_the_linked_answer(fake_bot):
    states = run_turn(fake_bot, "How does ViLT avoid convolution for vision?")

    streamed = [chat[-1]["content"] for chat, _, finished in states if not finished]
    assert len(streamed) > 3
    assert all(len(a) < len(b) for a, b in itertools.pairwise(streamed[1:]))  # grows each time
    chat, turns, finished = states[-1]
    assert finished and chat[0] == {"role": "user", "content": "How does ViLT avoid convolution for vision?"}
    assert 'class="cite" href="#src-1-' in chat[-1]["content"]
    assert turns[0]["answer"].citations


def test_is_it_true_that_checks_the_claim_and_shows_papers_with_their_sentences(fake_bot):
    states = run_turn(fake_bot, "Is it true that ViLT processes visual inputs without convolution?")
    chat, turns, finished = states[-1]
    assert finished and fake_bot.calls[-1]["claim"] == "ViLT processes visual inputs without convolution"
    content = chat[-1]["content"]
    assert "The collection supports this claim." in content
    assert "**Supports it**" in content and "ViLT: Vision-and-Language" in content and "“" in content
    assert turns[-1]["answer"] is None  # a check is not an answer: follow-ups do not take it as history


def test_an_ordinary_question_is_not_taken_for_a_claim():
    from rag import claim_of

    assert claim_of("check: ViLT is fast") == "ViLT is fast"
    assert claim_of("is it true that aspirin lowers fever?") == "Aspirin lowers fever"
    assert claim_of("How fast is ViLT?") is None
    assert claim_of("Is it true that") is None


def test_the_footer_says_what_the_judge_removed(papers):
    from rag import SentenceCheck
    from ui.render import judge_note

    answer = Answer(
        question="q",
        text="A [1].",
        sentences=[
            SentenceCheck(text="A [1].", citations=[1], supported=True, verdict="supported"),
            SentenceCheck(text="B [1].", dropped=True, verdict="contradicted"),
        ],
    )
    assert judge_note(answer) == "2 sentences judged against the cited abstract, 1 removed as contradicted"
    assert judge_note(Answer(question="q", text="A.")) == ""


def test_a_restart_clears_the_withdrawn_text_and_says_why(papers, evil_paper):
    bot = FakeBot([*papers, evil_paper], Settings(backend="extractive"), withdrawn="Bananas grow on trees.")
    states = run_turn(bot, "How does ViLT avoid convolution for vision?")
    streamed = [chat[-1]["content"] for chat, _, finished in states if not finished]
    withdrawn_at = max(index for index, content in enumerate(streamed) if "Bananas" in content)
    after = streamed[withdrawn_at + 1 :]
    assert after and all("Bananas" not in content and "Asking again" in content for content in after)
    chat, turns, _ = states[-1]
    assert "Bananas" not in chat[-1]["content"] and "Bananas" not in turns[-1]["shown"]


def test_chat_turn_escapes_the_question_and_the_answer(fake_bot):
    states = run_turn(fake_bot, "convolution <img src=x onerror=alert(9)> vision")
    chat, _, _ = states[-1]
    assert chat[0]["content"] == "convolution &lt;img src=x onerror=alert(9)&gt; vision"
    assert_no_raw_markup(chat[-1]["content"].replace('<a class="cite"', "").replace("</a>", ""))


def test_follow_up_passes_the_earlier_turns_as_history(fake_bot):
    first = run_turn(fake_bot, "How does ViLT avoid convolution?")[-1]
    run_turn(fake_bot, "And how fast is it?", chat=first[0], turns=first[1])

    question, answer = fake_bot.calls[-1]["history"][0]
    assert question == "How does ViLT avoid convolution?"
    assert answer == first[1][0]["answer"]  # the whole Answer: its citations keep its papers in view
    assert answer.citations


def test_a_client_sending_an_empty_chat_starts_a_new_conversation(fake_bot):
    first = run_turn(fake_bot, "How does ViLT avoid convolution?")[-1]
    chat, turns, _ = run_turn(fake_bot, "What are feature pyramids?", chat=[], turns=first[1])[-1]

    assert fake_bot.calls[-1]["history"] == []
    assert len(turns) == 1 and 'href="#src-1-' in chat[-1]["content"]


def test_k_and_filters_reach_the_bot(fake_bot):
    run_turn(fake_bot, "vision convolution", k=2, filters=Filters(author="Kim"))
    assert fake_bot.calls[-1]["k"] == 2
    assert fake_bot.calls[-1]["filters"].author == "Kim"


def test_year_and_category_boxes_become_filters():
    from ui.app import _filters

    assert _filters("", "", " ", 2019.0, None, " cs.LG ") == Filters(year_from=2019, category="cs.LG")
    assert _filters(None, None, None, None, 2021, "") == Filters(year_to=2021)


def test_a_rag_error_becomes_a_one_line_message_in_the_chat(papers):
    bot = FakeBot(papers, error=QuestionError("The question is 3000 characters long; the limit is 2000."))
    chat, turns, finished = run_turn(bot, "x" * 10)[-1]

    assert finished and turns[0]["answer"] is None
    assert 'class="error"' in chat[-1]["content"]
    assert "the limit is 2000." in chat[-1]["content"]


def test_an_unexpected_error_is_shown_in_one_line_not_a_traceback(papers):
    class Broken(FakeBot):
        def ask_stream(self, *args, **kwargs):
            raise KeyError("boom")

    chat, _, _ = run_turn(Broken(papers), "anything")[-1]
    assert "Internal error (KeyError" in chat[-1]["content"]
    assert "Traceback" not in chat[-1]["content"]


def test_closing_the_turn_early_closes_the_bots_stream(fake_bot):
    from ui.app import chat_turn

    turn = chat_turn(fake_bot, ready_warmup(fake_bot), "ViLT convolution vision", [], [], 3, Filters())
    for _ in range(4):  # a few streamed words
        next(turn)
    turn.close()  # what Gradio does on Stop

    assert fake_bot.closed.is_set() and not fake_bot.finished.is_set()


def test_a_question_asked_during_startup_waits_and_says_so(papers):
    bot = FakeBot(papers, warmup_s=1.2)
    from ui.app import Warmup, chat_turn

    warmup = Warmup(bot).start()
    states = snapshots(chat_turn(bot, warmup, "ViLT convolution", [], [], 3, Filters()))

    waiting = [chat[-1]["content"] for chat, _, finished in states if 'class="waiting"' in chat[-1]["content"]]
    assert waiting and "Loading" in waiting[0]
    assert states[-1][1][0]["answer"] is not None


def test_startup_failure_is_reported_in_the_status_and_the_chat(papers):
    class NoModel(FakeBot):
        @property
        def generator(self):
            from rag import BackendError

            raise BackendError("The model file is missing: run scripts/setup.sh.")

    from ui.app import Warmup, chat_turn

    warmup = Warmup(NoModel(papers)).start()
    assert warmup.ready.wait(5)
    assert "The model file is missing" in warmup.status_html()
    chat, _, _ = list(chat_turn(NoModel(papers), warmup, "vision", [], [], 3, Filters()))[-1]
    assert "The model file is missing" in chat[-1]["content"]


def test_filter_dropdowns_are_filled_from_the_index(fake_bot):
    warmup = ready_warmup(fake_bot)
    assert "000.txt" in warmup.sources and "Deep Learning Algorithms 3" in warmup.sessions


# --- launching ------------------------------------------------------------------------------------
def test_launch_options_bind_locally_never_share_and_log_in_only_with_both_credentials(tmp_path):
    from ui.app import launch_options

    plain = launch_options(Settings(data_dir=tmp_path, ui_port=9999))
    assert launch_options(Settings(data_dir=tmp_path, ui_max_upload_mb=2))["max_file_size"] == 2 * 1024 * 1024
    assert plain["server_name"] == "127.0.0.1" and plain["server_port"] == 9999
    assert plain["share"] is False and plain["auth"] is None
    assert launch_options(Settings(data_dir=tmp_path, ui_user="ann"))["auth"] is None
    assert launch_options(Settings(data_dir=tmp_path, ui_user="ann", ui_password="pw"))["auth"] == (
        "ann",
        "pw",
    )


def test_build_app_exposes_one_public_chat_endpoint(fake_bot):
    from ui.app import build_app

    app = build_app(fake_bot)
    api_names = {dep["api_name"] for dep in app.config["dependencies"] if dep.get("api_visibility") == "public"}
    assert api_names == {"chat"}
    assert threading.active_count() >= 1


# --- the Library: collections and import -----------------------------------------------------------
BIBTEX = r"""@article{first,
  title = {Sparse Mixtures of Experts for Long Documents},
  author = {Doe, Jane and Roe, Richard},
  year = {2023},
  abstract = {We route each token of a long document to two of sixty-four experts. Routing cuts compute by half.}
}
@inproceedings{second,
  title = {Calibrated Uncertainty for Tabular Classifiers},
  author = {Poe, Edgar},
  abstract = {Temperature scaling of gradient-boosted trees yields calibrated probabilities on tabular data.}
}
@misc{third,
  title = {A Note Without Its Abstract}
}
"""


def library_bot(papers, tmp_path, **settings) -> FakeBot:
    library = {"papers": papers[:2], "second": papers[2:3], "empty": []}
    return FakeBot(papers[:2], Settings(backend="extractive", data_dir=tmp_path, **settings), library=library)


def test_a_question_goes_to_the_sessions_collection(papers, tmp_path):
    bot = library_bot(papers, tmp_path)
    _, turns, _ = run_turn_in(bot, "What do feature pyramids add to object detection?", collection="second")[-1]
    assert turns[0]["answer"].citations[0].paper_id == "fpn"  # only the chosen collection holds it
    assert bot.for_collection("second").calls and not bot.calls
    run_turn_in(bot, "How does ViLT avoid convolution?", collection=None)
    assert bot.calls  # no choice: the bot's own collection


def run_turn_in(bot, question, collection):
    from ui.app import chat_turn

    return snapshots(chat_turn(bot, ready_warmup(bot), question, [], [], 3, Filters(), collection))


def test_the_library_offers_collections_with_papers_and_the_bots_own(papers, tmp_path):
    from ui.app import collection_names

    assert collection_names(library_bot(papers, tmp_path)) == ["papers", "second"]  # "empty" would be refilled


def handler(app, name):
    """A Python event handler of the built app, by function name (called directly, no browser)."""
    return next(fn.fn for fn in app.fns.values() if getattr(fn.fn, "__name__", "") == name)


def test_choosing_a_collection_refreshes_the_filters_and_starts_a_new_conversation(papers, tmp_path):
    from ui.app import build_app

    bot = library_bot(papers, tmp_path)
    choose = handler(build_app(bot, ready_warmup(bot)), "choose_collection")
    state, source, session, chat, turns, *_, note = choose("second", "papers")
    assert state == "second" and chat == [] and turns == []
    assert source.choices == [("", ""), ("001.txt", "001.txt")]  # the sources of that collection's papers
    assert session.choices == [("", "")]  # and its sessions: none
    assert "Asking second" in note
    assert all(value == {"__type__": "update"} for value in choose("papers", "papers"))  # gr.skip(): no change


def test_an_upload_is_copied_under_the_data_folder_and_ingested_into_the_new_collection(settings, papers, tmp_path):
    from rag import Bot, IngestProgress
    from ui.app import collection_names, import_bibliography

    bot = Bot(settings)
    bot.index.ingest(papers)
    upload = tmp_path / "client side" / "My Library (2024).bib"
    upload.parent.mkdir()
    upload.write_text(BIBTEX)
    seen: list[IngestProgress] = []

    html, imported = import_bibliography(bot, str(upload), " my-library ", progress=seen.append)

    assert imported == "my-library"
    kept = settings.data_dir / "uploads" / "my-library" / "My_Library_2024.bib"
    assert kept.read_text() == BIBTEX
    assert "2 papers added" in html and "1 entry without an abstract" in html and "My_Library_2024.bib" in html
    assert seen[-1].done == seen[-1].total == 2
    assert "my-library" in collection_names(bot)
    hits = bot.for_collection("my-library").search("calibrated probabilities tabular trees", k=5)
    assert {hit.paper.title for hit in hits} == {
        "Sparse Mixtures of Experts for Long Documents",
        "Calibrated Uncertainty for Tabular Classifiers",
    }
    assert bot.index.count() == 5  # the chat's own collection is untouched

    again, _ = import_bibliography(bot, str(upload), "my-library")
    assert "0 papers added" in again and "2 already there" in again  # importing twice adds nothing


@pytest.mark.parametrize(
    ("admins", "username", "allowed"),
    [((), "ann", True), ((), "bob", False), ((), None, False), (("carol",), "ann", False), (("carol",), "carol", True)],
)
def test_with_login_on_only_administrators_may_import(papers, tmp_path, admins, username, allowed):
    from ui.app import import_bibliography, may_import

    bot = library_bot(papers, tmp_path, ui_user="ann", ui_password="pw", ui_admins=list(admins))
    assert may_import(bot.settings, username) is allowed
    if not allowed:
        upload = tmp_path / "lib.bib"
        upload.write_text(BIBTEX)
        html, imported = import_bibliography(bot, str(upload), "mine", username=username)
        assert imported is None and "Only an administrator may import" in html and 'class="error"' in html
        assert not (tmp_path / "uploads").exists()  # refused before anything was written


def test_with_login_off_the_local_user_may_import(tmp_path):
    from ui.app import may_import

    assert may_import(Settings(data_dir=tmp_path), None)
    assert may_import(Settings(data_dir=tmp_path, ui_user="ann"), None)  # no password: login is off


@pytest.mark.parametrize(
    ("file_name", "content", "name", "message"),
    [
        ("lib.bib", BIBTEX, "../../etc", "not a usable collection name"),
        ("lib.bib", BIBTEX, "x", "not a usable collection name"),
        ("lib.bib", BIBTEX, "  ", "Name the collection"),
        ("run.exe", "MZ", "mine", "not a bibliography file"),
        (None, "", "mine", "Choose a bibliography file"),
    ],
)
def test_import_mistakes_are_one_line_in_the_page(settings, tmp_path, file_name, content, name, message):
    from rag import Bot
    from ui.app import import_bibliography

    upload = None
    if file_name:
        upload = tmp_path / file_name
        upload.write_text(content)
    html, imported = import_bibliography(Bot(settings), upload and str(upload), name)
    assert imported is None and message in html and html.count("\n") == 0 and "Traceback" not in html
    assert not list((settings.data_dir / "uploads").glob("*/*"))


def test_a_broken_file_reports_its_problem_in_one_short_block(settings, tmp_path):
    from rag import Bot
    from ui.app import import_bibliography

    upload = tmp_path / "broken.json"
    upload.write_text('{"broken": [1, 2')
    html, imported = import_bibliography(Bot(settings), str(upload), "mine")
    assert "0 papers added" in html and "1 problem" in html
    assert "invalid JSON" in html and "No paper with a title was found" in html
    assert imported is None  # no collection was made, so the Library's list stays as it is
    assert all(info.name != "mine" for info in Bot(settings).collections())


def test_a_collection_of_another_model_is_never_imported_into(settings, papers, tmp_path):
    from rag import Bot
    from rag.index import open_index
    from ui.app import import_bibliography

    class OtherModel:
        name, dimension = "other-model", 4

        def embed(self, texts):
            import numpy as np

            return np.full((len(texts), 4), 0.5, dtype=np.float32)

    with open_index(settings.with_changes(collection="theirs"), OtherModel()) as theirs:
        theirs.ingest(papers[:1])
    upload = tmp_path / "lib.bib"
    upload.write_text(BIBTEX)
    html, imported = import_bibliography(Bot(settings), str(upload), "theirs")
    assert imported is None and "another embedding model" in html
    with open_index(settings.with_changes(collection="theirs"), OtherModel()) as theirs:
        assert theirs.count() == 1  # not rebuilt


@pytest.mark.parametrize(
    ("client_name", "safe"),
    [
        ("../../etc/passwd.bib", "passwd.bib"),
        ("C:\\Users\\me\\My Papers.BIB", "My_Papers.bib"),
        ("<script>.json", "script.json"),
        (".hidden.csv", "hidden.csv"),
        ("ümlaut papers.jsonl", "mlaut_papers.jsonl"),
    ],
)
def test_upload_names_are_cleaned_and_never_paths(client_name, safe):
    from ui.app import safe_file_name

    assert safe_file_name(client_name) == safe


def test_gradio_hands_the_import_handler_the_login_and_a_progress_tracker(papers, tmp_path):
    import gradio as gr
    from gradio.helpers import special_args

    from ui.app import build_app

    bot = library_bot(papers, tmp_path, ui_user="ann", ui_password="pw")
    run_import = handler(build_app(bot, ready_warmup(bot)), "run_import")
    upload = tmp_path / "lib.bib"
    upload.write_text(BIBTEX)
    inputs, progress_index, _, _ = special_args(run_import, [str(upload), "mine", "papers"], gr.Request(username="bob"))
    assert progress_index == 4 and inputs[3].username == "bob"
    html, choices = run_import(*inputs)
    assert "Only an administrator may import" in html and choices == {"__type__": "update"}
