"""Every prompt and fixed answer text, as named constants (owned by the answer stage)."""

from __future__ import annotations

DECLINE_TEXT = "The collection does not say."
"""The exact answer when the sources do not answer the question (LLM and extractive backends alike)."""
