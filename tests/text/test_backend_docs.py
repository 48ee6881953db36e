"""The backend page names everything a backend author implements or may override.

A third party writes a backend from ``docs/writing-a-backend.md`` alone: a method of
:class:`~nip_core.text.backend.TextBackend` the core calls that the page never names
is one its author cannot know to implement.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from nip_core.text.backend import TextBackend

PAGE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-backend.md"

HELPERS = {"run_sync", "generate_one", "with_retries"}
"""Methods of the base a backend calls rather than overrides."""


def test_every_method_a_backend_may_override_is_on_the_page():
    text = PAGE.read_text()
    methods = {
        name
        for name, member in vars(TextBackend).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }
    assert {name for name in methods - HELPERS if f"{name}(" not in text} == set()


def test_the_page_says_how_a_lost_job_is_reported():
    assert "FineTuneJobNotFoundError" in PAGE.read_text()
