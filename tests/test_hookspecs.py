"""Meta-tests making the hook documentation and the hook tests a contract.

(a) every hook in ``nip_core/hookspecs.py`` has a docstring and a heading with its
exact signature in ``docs/hooks.md``, and the committed page is exactly what
``scripts/gen_hook_docs.py`` generates; (b) every hook has a ``test_hook_<name>``
test somewhere under ``tests/``.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import attrs
import pytest

from nip_core import hookspecs
from nip_core.plugins import HOOK_NAMES
from nip_core.records import ALL_RECORD_TYPES

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
HOOKS_PAGE = ROOT / "docs" / "hooks.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_hook_docs", ROOT / "scripts" / "gen_hook_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_hook_docs = _load_generator()
HOOKS = gen_hook_docs.hook_functions()
HOOK_IDS = [h.__name__ for h in HOOKS]


def test_every_hookspec_is_found_by_the_generator():
    marked = {
        name
        for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, "nip_spec")
    }
    assert marked == set(HOOK_IDS)
    assert len(HOOKS) == len(ALL_RECORD_TYPES) == 14


@pytest.mark.parametrize("hook", HOOKS, ids=HOOK_IDS)
def test_hook_has_a_docstring_saying_when_it_is_called(hook):
    doc = inspect.getdoc(hook)
    assert doc, f"{hook.__name__} has no docstring"
    assert "Called" in doc, (
        f"{hook.__name__}'s docstring does not say when it is called"
    )
    assert inspect.signature(hook).parameters == {}, "registration hooks take no args"


@pytest.mark.parametrize("hook", HOOKS, ids=HOOK_IDS)
def test_hook_is_documented_with_its_exact_signature(hook):
    signature = gen_hook_docs.hook_signature(hook)
    source = inspect.getsource(hook)
    # The rendered signature is the one written in the source.
    written = re.search(r"^def (.*):$", source, re.MULTILINE).group(1)
    assert signature == written
    assert f"### `{signature}`\n" in HOOKS_PAGE.read_text()


def test_committed_hook_page_is_the_generated_one():
    assert HOOKS_PAGE.read_text() == gen_hook_docs.render(), (
        "docs/hooks.md is stale: run python scripts/gen_hook_docs.py"
    )


def test_generator_check_mode_detects_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "hooks.md"
    stale.write_text("old\n")
    monkeypatch.setattr(gen_hook_docs, "OUTPUT", stale)
    monkeypatch.setattr(gen_hook_docs, "ROOT", tmp_path)
    assert gen_hook_docs.main(["--check"]) == 1
    assert "hooks.md is out of date" in capsys.readouterr().err
    assert gen_hook_docs.main([]) == 0
    assert gen_hook_docs.main(["--check"]) == 0


@pytest.mark.parametrize("hook", HOOKS, ids=HOOK_IDS)
def test_every_hook_has_a_test_hook_test(hook):
    pattern = re.compile(rf"^\s*def test_hook_{hook.__name__}\(", re.MULTILINE)
    files = [p for p in TESTS.rglob("test_*.py") if pattern.search(p.read_text())]
    assert files, f"no test_hook_{hook.__name__} test under tests/"


@pytest.mark.parametrize("kind", list(ALL_RECORD_TYPES))
def test_every_record_field_is_documented(kind):
    record_type = ALL_RECORD_TYPES[kind]
    described = gen_hook_docs._field_descriptions(record_type)
    for field in attrs.fields(record_type):
        if field.init and field.name not in ("plugin", "plugin_version"):
            assert described.get(field.name), (
                f"{record_type.__name__}.{field.name} has no description"
            )
    assert HOOK_NAMES[kind] in HOOK_IDS


@pytest.mark.parametrize(
    ("kind", "nested"),
    [("dataset_builder", "BuilderOption"), ("report_panel", "ReportMetric")],
)
def test_records_a_hook_record_holds_are_documented_field_by_field(kind, nested):
    # a plugin author builds DatasetBuilderSpec(options=[BuilderOption(...)]) from
    # the hook reference alone: the records its fields hold get tables too
    record_types = gen_hook_docs.nested_record_types(ALL_RECORD_TYPES[kind])
    assert [t.__name__ for t in record_types] == [nested]
    [record_type] = record_types
    described = gen_hook_docs._field_descriptions(record_type)
    assert [f.name for f in attrs.fields(record_type) if described.get(f.name)] == [
        f.name for f in attrs.fields(record_type)
    ]
    table = "\n".join(gen_hook_docs._record_table(record_type))
    assert f"Each `{nested}` (`nip_core.records`):\n\n{table}\n" in (
        HOOKS_PAGE.read_text()
    )


def test_the_reference_says_what_a_trainers_sections_decide():
    # they are not documentation only: a section one trainer lists is unread (and
    # warned about) in the runs of every trainer that does not list it
    described = gen_hook_docs._field_descriptions(ALL_RECORD_TYPES["trainer"])
    assert described["parameter_sections"].startswith(
        "Every parameter section the trainer reads, another trainer's included."
    )
    assert "warns that the setting has no effect" in described["parameter_sections"]
