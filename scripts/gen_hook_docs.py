"""Generate ``docs/hooks.md`` from ``nip_core/hookspecs.py``.

The hook specification module is the reference; this page is its rendering: one
section per banner comment of the module, one heading per hook with its exact
signature, its docstring, and the fields of the record it returns.

Usage::

    python scripts/gen_hook_docs.py           # rewrite docs/hooks.md
    python scripts/gen_hook_docs.py --check   # exit 1 if docs/hooks.md is stale

``tests/test_hookspecs.py`` fails when the committed page differs from the output.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "hooks.md"

_BANNER = re.compile(r"^# -{20,}\n# (?P<title>[^\n]+)\n# -{20,}$", re.MULTILINE)
_DEF = re.compile(r"^def (?P<name>register_\w+)\(", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc):`~?(?P<target>[^`]+)`")


def hook_functions() -> list:
    """The hook specifications, in source order."""
    from nip_core import hookspecs

    source = inspect.getsource(hookspecs)
    names = [m.group("name") for m in _DEF.finditer(source)]
    return [getattr(hookspecs, name) for name in names]


def hook_signature(function) -> str:
    """``register_trainers() -> list[TrainerSpec] | None``, as written in the spec."""
    signature = inspect.signature(function, eval_str=False)
    parameters = ", ".join(
        str(p).replace("'", "") for p in signature.parameters.values()
    )
    text = f"{function.__name__}({parameters})"
    if signature.return_annotation is not inspect.Signature.empty:
        annotation = signature.return_annotation
        if not isinstance(annotation, str):
            annotation = inspect.formatannotation(annotation)
        text += f" -> {annotation}"
    return text


def _markdown(docstring: str) -> str:
    """Turn Sphinx roles into code spans (the last dotted part, as ``~`` would)."""

    def replace(match: re.Match) -> str:
        target = match.group("target")
        if match.group(0).count("~"):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return _ROLE.sub(replace, docstring)


def _record_type_for(function):
    from nip_core.plugins import HOOK_NAMES
    from nip_core.records import ALL_RECORD_TYPES

    for kind, hook_name in HOOK_NAMES.items():
        if hook_name == function.__name__:
            return kind, ALL_RECORD_TYPES[kind]
    return None, None


def _default_text(field: attrs.Attribute) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return f"`{default.factory.__name__}()`"
    if isinstance(default, type):
        return f"`{default.__name__}`"
    return f"`{default!r}`"


def _field_descriptions(record_type) -> dict[str, str]:
    """Field name to its description, from the class's numpydoc Parameters."""
    doc = inspect.cleandoc(record_type.__doc__ or "")
    _, _, parameters = doc.partition("Parameters\n----------\n")
    descriptions: dict[str, list[str]] = {}
    current = None
    for line in parameters.splitlines():
        header = re.match(r"^(\w+) :", line)
        if header:
            current = header.group(1)
            descriptions[current] = []
        elif current is not None and line.startswith("    "):
            descriptions[current].append(line.strip())
        elif line.strip() == "" or not line.startswith(" "):
            if line.strip() and not header:
                current = None
    return {
        name: _markdown(" ".join(words)).replace("|", "\\|")
        for name, words in descriptions.items()
    }


def _record_table(record_type) -> list[str]:
    described = _field_descriptions(record_type)
    lines = [
        "| field | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for field in attrs.fields(record_type):
        if not field.init or field.name in ("plugin", "plugin_version"):
            continue
        type_text = field.type if isinstance(field.type, str) else repr(field.type)
        type_text = type_text.replace("|", "\\|")
        meaning = described.get(field.name, "")
        lines.append(
            f"| `{field.name}` | `{type_text}` | {_default_text(field)} | {meaning} |"
        )
    return lines


def nested_record_types(record_type) -> list:
    """The records of ``nip_core.records`` that fields of ``record_type`` hold
    (``ReportMetric`` in ``ReportPanelSpec.metrics``), in field order."""
    import nip_core.records as records

    hook_records = set(records.ALL_RECORD_TYPES.values())
    nested = []
    for field in attrs.fields(record_type):
        type_text = field.type if isinstance(field.type, str) else repr(field.type)
        for name in re.findall(r"\w+", type_text):
            candidate = getattr(records, name, None)
            if (
                attrs.has(candidate)
                and candidate not in hook_records
                and candidate not in nested
            ):
                nested.append(candidate)
    return nested


def render() -> str:
    """The text of ``docs/hooks.md``."""
    from nip_core import hookspecs

    source = inspect.getsource(hookspecs)
    banners = [(m.start(), m.group("title")) for m in _BANNER.finditer(source)]
    intro = _markdown(inspect.cleandoc(hookspecs.__doc__ or ""))
    intro = intro.replace("::\n\n", ":\n\n```python\n", 1)
    # The module docstring's literal block ends at the next unindented paragraph.
    intro = re.sub(
        r"```python\n((?:    .*\n|\n)+?)(?=\S)",
        lambda m: (
            "```python\n"
            + "\n".join(line[4:] for line in m.group(1).rstrip("\n").split("\n"))
            + "\n```\n\n"
        ),
        intro,
        count=1,
    )
    out = [
        "<!-- Generated by scripts/gen_hook_docs.py from nip_core/hookspecs.py. -->",
        "<!-- Do not edit: change the hook docstrings and regenerate. -->",
        "",
        "# Hook reference",
        "",
        intro.strip(),
        "",
        "Every record also carries `plugin` and `plugin_version`, set by the plugin "
        "manager; see [Plugins](plugins.md) and [Writing a plugin]"
        "(writing-a-plugin.md).",
        "",
    ]
    current_banner = None
    for function in hook_functions():
        position = source.index(f"\ndef {function.__name__}(")
        title = None
        for start, banner_title in banners:
            if start < position:
                title = banner_title
        if title != current_banner and title is not None:
            out += [f"## {title}", ""]
            current_banner = title
        out += [f"### `{hook_signature(function)}`", ""]
        out += [_markdown(inspect.cleandoc(function.__doc__ or "")), ""]
        kind, record_type = _record_type_for(function)
        if record_type is not None:
            out += [
                f"Returns a list of `{record_type.__name__}` records (registry "
                f"kind `{kind}`):",
                "",
                *_record_table(record_type),
                "",
            ]
            for nested in nested_record_types(record_type):
                out += [
                    f"Each `{nested.__name__}` (`nip_core.records`):",
                    "",
                    *_record_table(nested),
                    "",
                ]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if docs/hooks.md is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(
                f"{OUTPUT.relative_to(ROOT)} is out of date; run "
                "python scripts/gen_hook_docs.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
