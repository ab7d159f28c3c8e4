"""The Gradio chat face of the bot. `ui.app.build_app(bot)` builds it; `ui.app.launch(settings)` serves it."""
