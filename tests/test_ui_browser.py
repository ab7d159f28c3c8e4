"""The chat in a real browser: headless Debian Chromium driven by Playwright against the app on loopback.

Never `playwright install` (no downloads): the system Chromium is used, and never "networkidle" (Gradio keeps
a connection open). The app runs in a thread of the test process, so tests can also look at the bot.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import Settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
STREAM_DELAY_S = 0.35
"""Pause the test bot puts between streamed pieces, so the browser can see the answer grow."""

INJECTED_TITLE = "Quokka <script>window.__pwned=1</script> Networks for Marsupial Detection"
PAPERS = [
    {
        "id": "quokka",
        "title": INJECTED_TITLE,
        "text": (
            "We detect quokkas in camera-trap images with a small convolutional detector. "
            'Our images <img src=x onerror="window.__pwned=2"> come from island surveys. '
            "Quokka networks reach high recall on camera-trap images. <script>window.__pwned=3</script> "
            "The quokka detector runs in real time on camera traps."
        ),
        "authors": ["Ada <b>Lovelace</b>", "Alan Turing"],
        "session": "Wildlife Vision",
    },
    {
        "id": "vilt",
        "title": "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision",
        "text": (
            "Vision-and-Language Pre-training relies on region supervision and convolutional feature "
            "extraction. We present ViLT, a minimal model that processes visual inputs without convolution. "
            "ViLT is up to tens of times faster than previous VLP models."
        ),
        "authors": ["Wonjae Kim", "Bokyung Son", "Ildoo Kim"],
        "session": "Deep Learning Algorithms 3",
    },
    {
        "id": "fpn",
        "title": "Feature Pyramid Networks for Object Detection",
        "text": (
            "Feature pyramids are a basic component in recognition systems for detecting objects at "
            "different scales. A top-down architecture with lateral connections builds semantic feature maps."
        ),
    },
    {
        "id": "noise",
        "title": "Adding Gradient Noise Improves Learning for Very Deep Networks",
        "text": (
            "Deep feedforward and recurrent networks are hard to optimise. Adding annealed Gaussian noise to "
            "the gradient helps training of very deep networks."
        ),
    },
]

RECORD_GROWTH_JS = """
() => {
  window.__lengths = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => {
    const bots = chat.querySelectorAll('[data-testid="bot"]');
    if (!bots.length) return;
    const length = bots[bots.length - 1].innerText.length;
    if (window.__lengths[window.__lengths.length - 1] !== length) window.__lengths.push(length);
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.dismiss())  # an alert() would be a failed escape; never block
    yield page
    context.close()


@contextlib.contextmanager
def serving(bot) -> Iterator[str]:
    """The chat for `bot` on its settings' port, in this process; yields the URL."""
    from ui.app import build_app, serve

    app = build_app(bot)
    serve(app, bot.settings, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{bot.settings.ui.port}/"
    finally:
        app.close()


def open_chat(page, url: str, ready_timeout_s: float = 240) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#question textarea", timeout=60_000)
    page.wait_for_selector("#status .status.ready, #status .error", timeout=ready_timeout_s * 1000)
    assert page.locator("#status .status.ready").count() == 1, page.inner_text("#status")


def ask(page, question: str) -> None:
    page.fill("#question textarea", question)
    page.press("#question textarea", "Enter")


# --- extractive backend, tiny embedder, a corpus with injected markup -----------------------------
@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "papers.jsonl").write_text("".join(json.dumps(row) + "\n" for row in PAPERS), encoding="utf-8")
    return folder


@pytest.fixture
def extractive_url(settings, corpus_dir) -> Iterator[str]:
    from rag import Bot

    class SlowBot(Bot):
        """The real bot, with a pause between streamed pieces so streaming is visible in the browser."""

        def ask_stream(self, *args, **kwargs):
            for item in super().ask_stream(*args, **kwargs):
                if isinstance(item, str):
                    time.sleep(STREAM_DELAY_S)
                yield item

    test_settings = settings.with_changes(
        corpus_paths=[corpus_dir],
        ui_port=free_port(),
        min_relevance=-1.0,  # the tiny random embedder's similarities mean nothing; never decline
        extractive_sentences=3,
    )
    with serving(SlowBot(test_settings)) as url:
        yield url


def test_answer_streams_cites_and_shows_injected_markup_as_text(page, extractive_url):
    open_chat(page, extractive_url)
    page.evaluate(RECORD_GROWTH_JS)

    ask(page, "Where do the camera-trap images of quokkas come from?")  # the passage is the <img> sentence
    page.wait_for_selector("#sources li.source", timeout=60_000)
    page.wait_for_selector("#chat a.cite", timeout=30_000)

    lengths = page.evaluate("window.__lengths")
    assert len([n for n in lengths if n > 2]) >= 3, f"answer did not grow while streaming: {lengths}"
    cited = page.inner_text("#sources .sources")
    assert INJECTED_TITLE in cited  # the cited paper, with its markup shown as text
    assert "Ada <b>Lovelace</b>" in cited
    assert '<img src=x onerror="window.__pwned=2">' in page.inner_text("#sources")
    assert page.evaluate("window.__pwned") is None  # no injected script or handler ran
    assert page.locator("#sources script, #sources img, #chat script, #chat img[src='x']").count() == 0
    assert page.locator("#chat b").count() == 0  # '<b>' in an author name stayed text

    page.locator("#chat a.cite").first.click()
    page.wait_for_selector("#sources li.source.flash", timeout=5_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui.png"), full_page=True)


def test_follow_up_keeps_the_conversation_and_earlier_sources(page, extractive_url):
    open_chat(page, extractive_url)
    ask(page, "How are quokkas detected in camera-trap images?")
    page.wait_for_selector("#sources li.source", timeout=60_000)
    page.wait_for_selector("#send", state="visible", timeout=60_000)
    ask(page, "Which model processes visual inputs without convolution?")
    page.wait_for_selector("#sources details.earlier", timeout=60_000)

    assert page.locator('#chat [data-testid="bot"]').count() == 2
    assert "Q2: Which model processes visual inputs without convolution?" in page.inner_text("#sources")

    page.wait_for_selector("#send", state="visible", timeout=60_000)
    with page.expect_download(timeout=15_000) as download:
        page.click("#download")
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert "## Q1: How are quokkas detected in camera-trap images?" in exported
    assert "## Q2: Which model processes visual inputs without convolution?" in exported
    assert "**References**" in exported and "Quokka \\<script\\>" in exported


BIBTEX = r"""
@article{wombat2024,
  title = {Burrow Mapping with Wombat Radar},
  author = {Grace Hopper and Edsger Dijkstra},
  year = {2024},
  abstract = {We map wombat burrows with a ground-penetrating radar carried by drones. The radar finds burrows
    under dense scrub where cameras see nothing.}
}
@inproceedings{numbat2023,
  title = {Counting Numbats from Their Tracks},
  author = {Barbara Liskov},
  year = {2023},
  abstract = {Numbat tracks in red sand are counted by a small segmentation network.}
}
@misc{noabstract,
  title = {A Note Without an Abstract},
  year = {2022}
}
"""


def test_library_imports_a_bibliography_and_the_chat_asks_it(page, extractive_url, settings, tmp_path):
    open_chat(page, extractive_url)
    bib = tmp_path / "zotero export.bib"
    bib.write_text(BIBTEX, encoding="utf-8")

    page.click("#library button")  # open the accordion
    page.set_input_files("#import-file input[type=file]", str(bib))
    page.fill("#import-name textarea, #import-name input", "marsupials")
    page.wait_for_timeout(500)  # let the upload land before the click reads it
    page.click("#import")
    page.wait_for_selector("#import-status .import-report", timeout=120_000)
    report = page.inner_text("#import-status")
    assert "marsupials" in report and "2 papers added" in report and "1 entry without an abstract" in report
    stored = list((settings.data_dir / "uploads" / "marsupials").iterdir())
    assert len(stored) == 1 and stored[0].read_text(encoding="utf-8") == BIBTEX  # kept inside the data dir

    page.click("#collection input")
    page.click("[role=option]:has-text('marsupials')")
    page.wait_for_selector("#library-status :text('Asking marsupials')", timeout=60_000)
    ask(page, "How are wombat burrows mapped under dense scrub?")
    page.wait_for_selector("#chat a.cite", timeout=60_000)
    assert "Burrow Mapping with Wombat Radar" in page.inner_text("#sources .sources")
    assert "Quokka" not in page.inner_text("#sources .sources")  # the bundled test corpus is not asked


# --- Stop, with a slow fake bot whose stream reports being closed ---------------------------------
@pytest.fixture
def slow_fake(papers, tmp_path):
    from ui.fake import FakeBot

    bot = FakeBot(papers, Settings(data_dir=tmp_path, backend="extractive", ui_port=free_port()), delay_s=0.25)
    return bot


def test_stop_closes_the_generation_and_keeps_the_partial_answer(page, slow_fake):
    with serving(slow_fake) as url:
        open_chat(page, url, ready_timeout_s=30)
        ask(page, "What distance metric is robust for deep metric learning?")
        page.wait_for_selector("#stop", state="visible", timeout=10_000)
        time.sleep(1.0)  # a few words in
        page.click("#stop")

        assert slow_fake.closed.wait(10), "Stop did not close the bot's stream"
        assert not slow_fake.finished.is_set()
        page.wait_for_selector("#chat .stopped", timeout=10_000)
        page.wait_for_selector("#send", state="visible", timeout=10_000)
        partial = page.locator('#chat [data-testid="bot"]').last.inner_text()
        assert "Stopped" in partial and len(partial.split("Stopped")[0].strip()) > 0


# --- the default model, end to end ----------------------------------------------------------------
@pytest.mark.integration
def test_default_model_answers_with_a_citation(page, real_settings):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed yet")
    from rag import Bot

    settings = real_settings.with_changes(ui_port=free_port())  # the shared bundled index
    with serving(Bot(settings)) as url:
        open_chat(page, url, ready_timeout_s=600)
        ask(page, "How does ViLT process images without convolutions?")
        page.wait_for_selector("#chat .answer-meta, #chat .error", timeout=600_000)  # finished, or failed
        message = page.locator('#chat [data-testid="bot"]').last.inner_text()
        assert page.locator("#chat a.cite").count() >= 1, message
        assert "ViLT" in page.inner_text("#sources .sources")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-default-model.png"), full_page=True)
