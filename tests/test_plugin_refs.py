"""A plugin's references (``"module:attribute"``) that name nothing are one clear
error naming the reference, not a traceback from deep in a run."""

from __future__ import annotations

import sys

import pytest

from nip_core.errors import PluginError
from nip_core.records import resolve_ref


def test_a_reference_resolves_to_its_object():
    assert resolve_ref("nip_core.records:resolve_ref") is resolve_ref
    assert resolve_ref(resolve_ref) is resolve_ref


@pytest.mark.parametrize(
    ("ref", "detail"),
    [
        (
            "nip_core.records:resolve_reff",
            "nip_core.records has no attribute 'resolve_reff'; did you mean "
            "'resolve_ref'?",
        ),
        ("nip_core.recordz:anything", "there is no module 'nip_core.recordz'"),
        ("nip_kore.records:anything", "there is no module 'nip_kore'"),
        (
            "nip_core.records:Contribution.nope",
            "nip_core.records.Contribution has no attribute 'nope'",
        ),
    ],
)
def test_a_reference_that_names_nothing_is_a_plugin_error(ref, detail):
    with pytest.raises(PluginError) as caught:
        resolve_ref(ref)
    assert f"the plugin reference {ref!r} names nothing: {detail}" in str(caught.value)


def test_a_module_missing_a_dependency_keeps_its_import_error(tmp_path, monkeypatch):
    # the named module exists but imports a package that is not installed: that
    # is the ImportError callers turn into "install ..." hints, left as it is
    (tmp_path / "needs_missing.py").write_text("import not_installed_package\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "needs_missing", raising=False)
    with pytest.raises(ModuleNotFoundError) as caught:
        resolve_ref("needs_missing:X")
    assert not isinstance(caught.value, PluginError)
    assert caught.value.name == "not_installed_package"
