"""Gradio chat on top of `rag.Bot`: streamed answers with clickable citations and a sources panel.

Only the public API is used (`from rag import ...`), so the chat shows exactly what `ask_stream` returns.
Gradio is imported here and nowhere in `rag`, so `import rag` stays fast; `rag chat` imports this on demand.

Design notes (why things are the way they are):
- Models load and the index is built in a background thread at startup (`Warmup`); the page opens at once
  and a status line says what is happening. A question asked meanwhile waits, and says so.
- A Stop click cancels the Gradio event; Gradio then closes our generator, whose `finally` closes the bot's
  stream, so generation really stops and the bot's generation lock is released.
- Every corpus or user string is HTML-escaped by `ui.render` before it reaches the page.
- The Library picks the collection a browser session asks (a `gr.State` per session, so one user's choice never
  changes another's) and imports a bibliography into a collection. Every collection's bot is
  `Bot.for_collection` of the one bot: they share its models and its generation lock, so a local model still
  computes one answer at a time. An upload is copied into `<data_dir>/uploads/<collection>/` under a cleaned
  name (the client's path is never used), and only an administrator may import when login is on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio reads it
import gradio as gr

from rag import Answer, Bot, Filters, IngestProgress, RagError, Restart, Settings, claim_of, collections
from ui import render

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).parent
STYLE_PATH = ASSETS_DIR / "style.css"
SCRIPT_PATH = ASSETS_DIR / "cite.js"

EXAMPLE_QUESTIONS = (
    "Which papers propose a new distance metric for deep metric learning?",
    "How does ViLT process images without convolutions?",
    "What do feature pyramid networks add to object detection?",
    "Which papers add noise to gradients, and why does it help?",
)
"""Shown on the empty chat; they are answerable from the bundled seed pages."""

STATUS_POLL_S = 1.0
"""How often an open page asks the server whether start-up has finished."""

UPLOAD_TYPES = (".bib", ".json", ".jsonl", ".csv", ".txt")
"""Bibliography files the import form takes; `rag.ingest` tells their formats apart by content."""
UPLOADS_DIR = "uploads"
"""Under the data folder: one folder per collection holding the files imported into it."""
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
IMPORT_PROGRESS = gr.Progress()
"""Marks the import handler's progress parameter: Gradio passes each call a tracker of its own in its place."""


class Warmup:
    """Loads the models and builds the index in a background thread, recording what it is doing."""

    def __init__(self, bot: Bot):
        self.bot = bot
        self.step = "Starting"
        self.error: str | None = None
        self.sources: list[str] = []
        self.sessions: list[str] = []
        self.ready = threading.Event()
        self._started = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> Warmup:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rag-ui-warmup", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.step = "Loading the embedding model"
            _ = self.bot.embedder
            self.step = "Opening the index"
            if _index_size(self.bot) == 0:
                self.step = "Building the index from the bundled papers (first run only, about a minute)"
            self.bot.ensure_index()
            self.sources, self.sessions = _filter_choices(self.bot)
            self.step = "Loading the answer model"
            self.bot.warm_up()
            self.step = "Ready"
        except RagError as error:
            self.error = str(error)
        except Exception as error:  # the page must say why it cannot answer, not hang
            log.exception("start-up failed")
            self.error = f"Start-up failed: {type(error).__name__}: {error}"
        finally:
            self.ready.set()

    def backend_name(self) -> str:
        """The backend actually loaded ('auto' resolved), once start-up is over."""
        if self.ready.is_set() and not self.error:
            return getattr(self.bot.generator, "name", None) or self.bot.settings.generation.backend
        return self.bot.settings.generation.backend

    def status_html(self) -> str:
        if self.error:
            return render.render_error(self.error)
        if self.ready.is_set():
            backend = self.backend_name()
            return f'<div class="status ready">Ready · backend <b>{render.escape(backend)}</b></div>'
        elapsed = time.monotonic() - self._started
        return (
            f'<div class="status busy"><span class="spinner"></span>{render.escape(self.step)}… '
            f'<span class="muted">{elapsed:.0f} s</span></div>'
        )


def _index_size(bot: Bot) -> int | None:
    """Number of chunks indexed, or None when the bot does not say (asking opens the index)."""
    try:
        return bot.index.count()
    except AttributeError:
        return None


def _filter_choices(bot: Bot) -> tuple[list[str], list[str]]:
    """Source pages and session names present in the index, to fill the filter dropdowns."""
    try:
        papers = list(bot.index.papers().values())  # {paper id: Paper}
    except Exception:  # filters stay free text when the index cannot list its papers
        log.warning("could not list indexed papers for the filter dropdowns", exc_info=True)
        return [], []
    sources = sorted({name for paper in papers for name in paper.sources})
    sessions = sorted({paper.session for paper in papers if paper.session})
    return sources, sessions


def _filters(
    source: str | None,
    session: str | None,
    author: str | None,
    year_from: float | None = None,
    year_to: float | None = None,
    category: str | None = None,
) -> Filters:
    return Filters(
        source=source or None,
        session=session or None,
        author=(author or "").strip() or None,
        year_from=_year(year_from),
        year_to=_year(year_to),
        category=(category or "").strip() or None,
    )


def _year(value: float | str | None) -> int | None:
    """A year box's value (a number, or nothing when left empty) as a year."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _history(turns: list[dict]) -> list[tuple[str, Answer]]:
    """Completed turns as (question, Answer) pairs, for follow-ups; stopped or failed turns are left out. The
    whole `Answer` goes back, not its text: its citations keep the papers it was about in view."""
    return [(turn["question"], turn["answer"]) for turn in turns if turn["answer"] is not None]


def _answered_turns(turns: list[dict]) -> list[tuple[int, Answer]]:
    return [(number, turn["answer"]) for number, turn in enumerate(turns, start=1) if turn["answer"] is not None]


def _export(turns: list[dict]) -> str | None:
    """Write the conversation to a fresh Markdown file; return its path (None when there is nothing yet)."""
    if not turns:
        return None
    folder = Path(tempfile.mkdtemp(prefix="rag-chat-"))
    path = folder / "conversation.md"
    rows = [(turn["question"], turn["answer"], turn["shown"]) for turn in turns]
    path.write_text(render.conversation_markdown(rows), encoding="utf-8")
    return str(path)


def _backend_html(name: str) -> str:
    return f'<div class="backend">Backend: <b>{render.escape(name)}</b></div>'


def _download(turns: list[dict]) -> gr.DownloadButton:
    """The download button pointing at a fresh export; disabled while there is nothing to download."""
    path = _export(turns)
    return gr.DownloadButton(value=path, interactive=path is not None)


def chat_turn(
    bot: Bot,
    warmup: Warmup,
    question: str,
    chat: list[dict],
    turns: list[dict],
    k: int,
    filters: Filters,
    collection: str | None = None,
) -> Iterator[tuple[list[dict], list[dict], bool]]:
    """One question -> answer turn of the chat, as a stream of (chat messages, turns, finished) states.

    `collection` is the session's choice in the Library (None: the bot's own). The last state has finished=True
    and the answer rendered (or a one-line error). Closing the generator early (the Stop button) closes the
    bot's stream: generation stops and the bot's generation lock is freed.
    """
    question = question.strip()
    # the chat is the truth: a client that starts over with a shorter chat starts a new conversation
    turns = turns[: sum(1 for message in chat if message.get("role") == "user")]
    chat = [*chat, {"role": "user", "content": render.escape(question)}, {"role": "assistant", "content": ""}]
    turns = [*turns, {"question": question, "answer": None, "shown": ""}]
    number = len(turns)
    while not warmup.ready.wait(timeout=0.5):
        chat[-1]["content"] = render.render_note(
            f"{warmup.step}… your question is answered as soon as the bot is ready."
        )
        yield chat, turns, False
    stream = None
    try:
        if warmup.error:
            raise RagError(warmup.error)
        bot = bot_for(bot, collection)
        if claim := claim_of(question):  # "Is it true that ...?": the papers for and against, not an answer
            chat[-1]["content"] = render.render_note("Checking the claim against the closest papers…")
            yield chat, turns, False
            result = bot.check(claim, k=k, filters=filters)
            turns[-1]["shown"] = result.verdict
            chat[-1]["content"] = render.render_check(result)
            yield chat, turns, True
            return
        stream = bot.ask_stream(question, history=_history(turns[:-1]), k=k, filters=filters)
        chat[-1]["content"] = render.render_streaming("")
        yield chat, turns, False
        note = ""
        for item in stream:
            if isinstance(item, Answer):
                turns[-1]["answer"] = item
                turns[-1]["shown"] = item.text
                break
            if isinstance(item, Restart):  # the text so far is withdrawn; the answer starts again
                turns[-1]["shown"], note = "", render.render_note(item.reason)
            else:
                turns[-1]["shown"] += item
            chat[-1]["content"] = note + render.render_streaming(turns[-1]["shown"])
            yield chat, turns, False
        answer = turns[-1]["answer"]
        if answer is None:
            raise RagError("The answer stage ended without an answer; please ask again.")
        chat[-1]["content"] = render.render_answer(answer, number) + render.answer_footer(answer, number)
    except RagError as error:
        chat[-1]["content"] = render.render_error(str(error))
    except Exception as error:  # shown as one line; the traceback goes to the server log
        log.exception("answering %r failed", question)
        message = f"Internal error ({type(error).__name__}: {error}); the server log has the details."
        chat[-1]["content"] = render.render_error(message)
    finally:
        if stream is not None:
            stream.close()
    yield chat, turns, True


def bot_for(bot: Bot, collection: str | None) -> Bot:
    """The bot that answers over `collection` (the bot itself for its own collection or none)."""
    if not collection or collection == bot.settings.collection:
        return bot
    return bot.for_collection(collection)


def collection_names(bot: Bot) -> list[str]:
    """The collections the Library offers: those the bot's model can read that hold papers, and its own.

    Empty ones are left out: a bot asked over an empty collection would fill it with the bundled papers."""
    own = bot.settings.collection
    try:
        names = [info.name for info in bot.collections() if info.chunks > 0 or info.name == own]
    except RagError as error:  # an unreachable server: the chat still answers over its own collection
        log.warning("could not list the collections: %s", error)
        return [own]
    return names if own in names else sorted([*names, own])


def login_on(settings: Settings) -> bool:
    """The chat asks for a login only when both a user name and a password are set."""
    return bool(settings.ui.user and settings.ui.password)


def may_import(settings: Settings, username: str | None) -> bool:
    """Importing writes to the store: with login on only the administrators may (default: the configured
    user); with login off the chat is one local user's, who may."""
    if not login_on(settings):
        return True
    admins = settings.ui.admins or [settings.ui.user]
    return username is not None and username in admins


def safe_file_name(name: str) -> str:
    """The last part of a client's file name, reduced to letters, digits, '.', '_' and '-' (never a path)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, suffix = os.path.splitext(base)
    stem = UNSAFE_NAME_CHARS.sub("_", stem).strip("._-")[:100] or "upload"
    return stem + UNSAFE_NAME_CHARS.sub("", suffix).lower()


def store_upload(upload: str | os.PathLike, settings: Settings, collection: str) -> Path:
    """Copy an uploaded file into `<data_dir>/uploads/<collection>/` under a safe name (a file of the same name
    there is replaced, whole: the copy is renamed into place) and return the copy's path."""
    source = Path(upload)
    name = safe_file_name(source.name)
    if Path(name).suffix not in UPLOAD_TYPES:
        raise RagError(f"{name} is not a bibliography file: import one of {', '.join(UPLOAD_TYPES)}.")
    folder = (settings.data_dir / UPLOADS_DIR / collection).resolve()
    target = folder / name
    if target.parent != folder:  # a name the cleaning let through as a path: never write outside the folder
        raise RagError(f"{name} is not a usable file name.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.part"
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError as error:
        raise RagError(f"Cannot keep the uploaded file in {folder}: {error.strerror or error}.") from error
    return target


def import_bibliography(
    bot: Bot,
    upload: str | os.PathLike | None,
    name: str | None,
    username: str | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
) -> tuple[str, str | None]:
    """The import form: check who asks and what, keep the file, ingest it into collection `name` with
    `progress`; returns (the report or a one-line error, as HTML; the collection imported into, or None when
    no paper was imported: a file with none creates no collection)."""
    settings = bot.settings
    try:
        if not may_import(settings, username):
            raise RagError("Only an administrator may import papers; ask one to add this file.")
        if not upload:
            raise RagError(f"Choose a bibliography file to import ({', '.join(UPLOAD_TYPES)}).")
        name = (name or "").strip()
        if not name:
            raise RagError("Name the collection to import into, e.g. my-library.")
        target = bot_for(bot, name)
        check_model(bot, name)
        stored = store_upload(upload, settings, name)
        report = target.ingest([stored], progress=progress)
    except RagError as error:
        return render.render_error(str(error)), None
    except Exception as error:  # one line on the page; the traceback goes to the server log
        log.exception("importing %r failed", upload)
        return render.render_error(f"Import failed ({type(error).__name__}: {error}); see the server log."), None
    return render.render_import_report(stored.name, name, report), name if report.papers else None


def check_model(bot: Bot, name: str) -> None:
    """Refuse to import into a collection this bot's model cannot read: opening it would rebuild it empty."""
    readable = {info.name for info in bot.collections()}
    if name not in readable and any(info.name == name for info in collections(bot.settings)):
        raise RagError(f"Collection {name!r} was made with another embedding model or tool; choose another name.")


def build_app(bot: Bot, warmup: Warmup | None = None) -> gr.Blocks:
    """The chat as a `gr.Blocks` (not launched). Starts the warm-up thread if it is not running yet."""
    warmup = (warmup or Warmup(bot)).start()
    settings = bot.settings

    def respond(
        question,
        chat,
        turns,
        k,
        source,
        session,
        author,
        year_from=None,
        year_to=None,
        category=None,
        collection=None,
    ) -> Iterator[tuple]:
        """Stream one answer into the chat; yields (textbox, chat, turns, sources, download, send, stop)."""
        if not (question or "").strip():
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        busy = (gr.Button(visible=False), gr.Button(visible=True))
        idle = (gr.Button(visible=True), gr.Button(visible=False))
        filters = _filters(source, session, author, year_from, year_to, category)
        # closing(): when Gradio closes `respond` (Stop), the turn and the bot's stream are closed at once
        turn = chat_turn(bot, warmup, question, chat, turns, int(k), filters, collection)
        with contextlib.closing(turn) as updates:
            for chat, turns, finished in updates:
                if not finished:
                    yield "", chat, turns, gr.skip(), gr.skip(), *busy
                    continue
                panel = render.render_sources_panel(_answered_turns(turns))
                yield "", chat, turns, panel, _download(turns), *idle

    def mark_stopped(chat, turns):
        """After a Stop click: keep the partial answer, say it was stopped, restore the Send button."""
        if turns and turns[-1]["answer"] is None and chat and chat[-1]["role"] == "assistant":
            shown = turns[-1]["shown"]
            chat = [*chat[:-1], {"role": "assistant", "content": render.escape(shown) + render.STOPPED_NOTE}]
        return (
            chat,
            _download(turns),
            gr.Button(visible=True),
            gr.Button(visible=False),
        )

    def clear():
        return (
            [],
            [],
            render.render_sources_panel([]),
            gr.DownloadButton(value=None, interactive=False),
            gr.Button(visible=True),
            gr.Button(visible=False),
        )

    def poll_status():
        if not warmup.ready.is_set():
            return warmup.status_html(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (
            warmup.status_html(),
            gr.Timer(active=False),
            gr.Dropdown(choices=["", *warmup.sources]),
            gr.Dropdown(choices=["", *warmup.sessions]),
            _backend_html(warmup.backend_name()),
        )

    def pick_example(event: gr.SelectData) -> str:
        return event.value["text"]

    def refresh_library(current):
        """The collections on offer, with this session's choice kept selected."""
        return gr.Dropdown(choices=collection_names(bot), value=current or settings.collection)

    def choose_collection(name, current):
        """Ask `name` from now on in this session: its filter choices, and a new conversation (the papers of
        the last answers are not in it)."""
        if not name or name == current:
            return (gr.skip(),) * 9
        try:
            chosen = bot_for(bot, name)
            papers = _index_size(chosen)
        except RagError as error:
            return (gr.skip(),) * 8 + (render.render_error(str(error)),)
        sources, sessions = _filter_choices(chosen)
        note = render.render_note(f"Asking {name} ({papers or 0:,} chunks); a new conversation started.")
        return (
            name,
            gr.Dropdown(choices=["", *sources], value=""),
            gr.Dropdown(choices=["", *sessions], value=""),
            [],
            [],
            render.render_sources_panel([]),
            gr.DownloadButton(value=None, interactive=False),
            gr.skip(),
            note,
        )

    def run_import(upload, name, current, request: gr.Request, progress=IMPORT_PROGRESS):
        """The Import button: the report (or one line), and the Library offering the new collection."""

        def show(step: IngestProgress) -> None:
            progress(step.done / step.total if step.total else 1.0, desc=step.summary())

        progress(0.0, desc="Reading the file")
        username = getattr(request, "username", None)
        html, imported = import_bibliography(bot, upload, name, username=username, progress=show)
        choices = gr.Dropdown(choices=collection_names(bot), value=current) if imported else gr.skip()
        return html, choices

    with gr.Blocks(title="Ask the papers", analytics_enabled=False) as app:
        turns = gr.State([])
        collection = gr.State(settings.collection)  # this browser session's collection
        with gr.Row(elem_classes="header"):
            gr.HTML(
                '<div class="brand"><h1>Ask the papers</h1><p>Answers drawn from machine-learning paper '
                "abstracts, each claim cited <span class='cite-sample'>[n]</span> to the paper it comes "
                "from.</p></div>"
            )
            status = gr.HTML(warmup.status_html(), elem_id="status", elem_classes="status-box")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=420):
                chatbot = gr.Chatbot(
                    elem_id="chat",
                    show_label=False,
                    height=560,
                    buttons=[],  # Gradio's copy would copy our HTML; each answer has its own "Copy" link
                    feedback_options=None,
                    examples=[{"text": text} for text in EXAMPLE_QUESTIONS],
                    placeholder="<div class='placeholder'><b>Ask about the papers in the collection.</b><br>"
                    "Follow-up questions keep the context. Click a [n] to jump to its paper.</div>",
                    sanitize_html=True,
                    latex_delimiters=[],
                    layout="bubble",
                )
                with gr.Row(elem_classes="composer"):
                    textbox = gr.Textbox(
                        elem_id="question",
                        show_label=False,
                        placeholder="Ask a question about the papers…",
                        lines=1,
                        max_lines=6,
                        max_length=settings.answer.max_question_chars,
                        scale=8,
                        autofocus=True,
                    )
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="send")
                    stop = gr.Button("Stop", variant="stop", scale=1, min_width=90, visible=False, elem_id="stop")
                with gr.Row(elem_classes="actions"):
                    clear_button = gr.Button("New conversation", size="sm", variant="secondary")
                    download = gr.DownloadButton(
                        "Download conversation (.md)",
                        size="sm",
                        variant="secondary",
                        elem_id="download",
                        interactive=False,
                    )
            with gr.Column(scale=2, min_width=340):
                with gr.Accordion("Search settings", open=False, elem_id="settings"):
                    k = gr.Slider(1, 20, value=settings.retrieval.top_k, step=1, label="Papers to retrieve (k)")
                    source = gr.Dropdown(
                        choices=[""],
                        value="",
                        label="Source page",
                        allow_custom_value=True,
                        elem_id="f-source",
                    )
                    session = gr.Dropdown(
                        choices=[""], value="", label="Session", allow_custom_value=True, elem_id="f-session"
                    )
                    author = gr.Textbox(label="Author", placeholder="part of a name", elem_id="f-author")
                    with gr.Row():
                        year_from = gr.Number(label="From year", precision=0, elem_id="f-year-from")
                        year_to = gr.Number(label="To year", precision=0, elem_id="f-year-to")
                    category = gr.Textbox(
                        label="Category or venue", placeholder="e.g. cs.LG, or part of a journal", elem_id="f-category"
                    )
                    backend = gr.HTML(_backend_html(settings.generation.backend), elem_id="backend")
                with gr.Accordion("Library", open=False, elem_id="library"):
                    collection_choice = gr.Dropdown(
                        choices=[settings.collection],
                        value=settings.collection,
                        label="Collection",
                        info="The papers this conversation asks.",
                        elem_id="collection",
                    )
                    library_status = gr.HTML("", elem_id="library-status")
                    upload = gr.File(
                        label="Import a bibliography (" + ", ".join(UPLOAD_TYPES) + ")",
                        file_types=list(UPLOAD_TYPES),
                        type="filepath",
                        elem_id="import-file",
                    )
                    new_name = gr.Textbox(
                        label="New collection name",
                        placeholder="3-63 letters, digits, '.', '_' or '-'",
                        info="Administrators only." if login_on(settings) else None,
                        elem_id="import-name",
                    )
                    import_button = gr.Button("Import", variant="secondary", elem_id="import")
                    import_status = gr.HTML("", elem_id="import-status")
                sources_panel = gr.HTML(render.render_sources_panel([]), elem_id="sources")

        inputs = [textbox, chatbot, turns, k, source, session, author, year_from, year_to, category, collection]
        outputs = [textbox, chatbot, turns, sources_panel, download, send, stop]
        answer_events = [
            textbox.submit(respond, inputs, outputs, api_name="chat", show_progress="hidden"),
            send.click(respond, inputs, outputs, api_visibility="private", show_progress="hidden"),
            chatbot.example_select(pick_example, None, textbox, api_visibility="private", queue=False).then(
                respond, inputs, outputs, api_visibility="private", show_progress="hidden"
            ),
        ]
        stop.click(None, cancels=answer_events).then(
            mark_stopped,
            [chatbot, turns],
            [chatbot, download, send, stop],
            api_visibility="private",
            queue=False,
        )
        new_conversation = {
            "fn": clear,
            "inputs": None,
            "outputs": [chatbot, turns, sources_panel, download, send, stop],
            "cancels": answer_events,
            "api_visibility": "private",
            "queue": False,
        }
        clear_button.click(**new_conversation)
        chatbot.clear(**new_conversation)  # the chat's own trash icon: forget the conversation, not just bubbles
        timer = gr.Timer(STATUS_POLL_S, active=not warmup.ready.is_set())
        status_update = {
            "fn": poll_status,
            "inputs": None,
            "outputs": [status, timer, source, session, backend],
            "api_visibility": "private",
            "queue": False,
            "show_progress": "hidden",
        }
        timer.tick(**status_update)  # while starting up
        app.load(**status_update)  # and for every page opened later
        app.load(refresh_library, collection, collection_choice, api_visibility="private", show_progress="hidden")
        collection_choice.input(
            choose_collection,
            [collection_choice, collection],
            [collection, source, session, chatbot, turns, sources_panel, download, collection_choice, library_status],
            cancels=answer_events,
            api_visibility="private",
            show_progress="hidden",
        )
        import_button.click(
            run_import,
            [upload, new_name, collection],
            [import_status, collection_choice],
            api_visibility="private",
            concurrency_limit=1,  # one import at a time; answers keep their own queue
        )
    return app


def launch_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `Blocks.launch`: bind address, login, no share link, look and feel."""
    auth = (settings.ui.user, settings.ui.password) if settings.ui.user and settings.ui.password else None
    system_fonts = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    return {
        "server_name": settings.ui.host,
        "server_port": settings.ui.port,
        "share": False,
        "auth": auth,
        "max_file_size": settings.ui.max_upload_mb * 1024 * 1024,
        "show_error": False,
        "footer_links": [],
        "theme": gr.themes.Soft(
            primary_hue="indigo",
            neutral_hue="slate",
            font=system_fonts,  # no web fonts: the app runs offline
            font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
        ),
        "css": STYLE_PATH.read_text(encoding="utf-8"),
        "head": f"<script>{SCRIPT_PATH.read_text(encoding='utf-8')}</script>",
    }


def serve(app: gr.Blocks, settings: Settings, **overrides: Any) -> Any:
    """Queue the app with bounded concurrency and launch it with `launch_options` (plus overrides)."""
    app.queue(default_concurrency_limit=settings.ui.concurrency, max_size=None)
    options = launch_options(settings) | overrides
    options["share"] = False  # never open a public tunnel
    return app.launch(**options)


def launch(settings: Settings | None = None, **overrides: Any) -> Any:
    """Start the chat for `rag chat`: build the bot, start warming it up, serve until interrupted."""
    settings = settings or Settings()
    bot = Bot(settings)
    app = build_app(bot)
    return serve(app, settings, **overrides)
