"""Registries: the records one kind of hook returned, stamped, sorted and checked.

A :class:`Registry` is an immutable, read-only mapping from key to record, built by
the plugin manager (:mod:`nip_core.plugins`) from the records every plugin's hook
implementation returned. It

- sorts its records by key, so order never depends on registration order;
- sets aside a key that two records share: the key is unusable (looking it up raises
  :class:`~nip_core.errors.DuplicateKeyError`, naming both plugins and their
  versions) while every other key keeps working; :attr:`Registry.conflicts` lists
  them;
- answers an unknown key with :class:`~nip_core.errors.UnknownKeyError`, whose
  message lists the known keys and suggests the closest one.

Example
-------
>>> from nip_core.records import LoggerSpec
>>> registry = Registry(
...     "logger",
...     [
...         LoggerSpec(name="jsonl", logger_class="m:Jsonl", plugin="nip-core"),
...         LoggerSpec(name="csv", logger_class="m:Csv", plugin="nip-core"),
...     ],
... )
>>> list(registry)
['csv', 'jsonl']
>>> registry["jsnl"]
Traceback (most recent call last):
...
nip_core.errors.UnknownKeyError: unknown logger 'jsnl'; did you mean 'jsonl'? ...
"""

from __future__ import annotations

import difflib
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from typing import Any, Generic, TypeVar, overload

from nip_core.errors import DuplicateKeyError, UnknownKeyError
from nip_core.records import Contribution

R = TypeVar("R", bound=Contribution)
D = TypeVar("D")

_MISSING: Any = object()

_MAX_KEYS_SHOWN = 40
"""Known keys listed in an unknown-key message; longer lists are cut with a count."""


def describe_origin(record: Contribution) -> str:
    """Say which plugin a record came from: ``"plugin 'x' (version 1.2)"``."""
    name = record.plugin if record.plugin is not None else "<unregistered>"
    if record.plugin_version:
        return f"plugin {name!r} (version {record.plugin_version})"
    return f"plugin {name!r}"


def closest_key(key: str, known: Iterable[str]) -> str | None:
    """Return the known key closest to ``key``, or ``None`` when none is close.

    Uses :func:`difflib.get_close_matches`, falling back to a case-insensitive
    comparison (``"NIP"`` suggests ``"nip"``).
    """
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return lowered[key.lower()]
    matches = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


class Registry(Generic[R], Mapping[str, R]):
    """The records of one kind, by key.

    Parameters
    ----------
    kind : str
        The record kind (a key of :data:`nip_core.records.ALL_RECORD_TYPES`, e.g.
        ``"scenario"``); used in messages.
    records : Iterable[R]
        The records, usually stamped with their plugin (``record.plugin``).

    A key that several records share is a conflict: it is left out of the mapping
    (not contained, not iterated) and looking it up raises
    :class:`~nip_core.errors.DuplicateKeyError` naming every plugin that registered
    it. One clash never makes the rest of the registry unusable.
    """

    __slots__ = ("_conflicts", "_kind", "_records")

    def __init__(self, kind: str, records: Iterable[R] = ()):
        self._kind = kind
        by_key: dict[str, list[R]] = {}
        for record in records:
            by_key.setdefault(record.key, []).append(record)
        self._records: dict[str, R] = {
            key: found[0] for key, found in sorted(by_key.items()) if len(found) == 1
        }
        self._conflicts: dict[str, tuple[R, ...]] = {
            key: tuple(found) for key, found in sorted(by_key.items()) if len(found) > 1
        }

    @property
    def conflicts(self) -> Mapping[str, tuple[R, ...]]:
        """Keys registered more than once, each with every record that claims it."""
        return dict(self._conflicts)

    def conflict_error(self, key: str) -> DuplicateKeyError | None:
        """The error of a key registered more than once; ``None`` for other keys."""
        found = self._conflicts.get(key) if isinstance(key, str) else None
        if found is None:
            return None
        return DuplicateKeyError(_duplicate_message(self._kind, key, found))

    @property
    def kind(self) -> str:
        """The record kind, e.g. ``"scenario"``."""
        return self._kind

    def __getitem__(self, key: str) -> R:
        try:
            return self._records[key]
        except (KeyError, TypeError):
            raise self._unknown(key) from None

    @overload
    def get(self, key: str) -> R: ...

    @overload
    def get(self, key: str, default: D) -> R | D: ...

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Return the record with ``key``.

        Unlike :meth:`dict.get`, a missing key raises
        :class:`~nip_core.errors.UnknownKeyError` unless ``default`` is given.
        """
        if default is _MISSING:
            return self[key]
        return self._records.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def keys(self) -> KeysView[str]:
        """The keys, sorted."""
        return self._records.keys()

    def values(self) -> ValuesView[R]:
        """The records, sorted by key."""
        return self._records.values()

    def items(self) -> ItemsView[str, R]:
        """``(key, record)`` pairs, sorted by key."""
        return self._records.items()

    def where(
        self, predicate: Callable[[R], bool] | None = None, **fields: Any
    ) -> list[R]:
        """Return the records matching ``predicate`` and every ``field=value`` given.

        ``pm.agent_parts.where(scenario="graph_isomorphism")`` gives that scenario's
        parts, sorted by key.
        """
        found = []
        for record in self._records.values():
            if any(getattr(record, name) != value for name, value in fields.items()):
                continue
            if predicate is not None and not predicate(record):
                continue
            found.append(record)
        return found

    def by_plugin(self) -> dict[str, list[str]]:
        """Map each contributing plugin's name to the keys it registered."""
        result: dict[str, list[str]] = {}
        for key, record in self._records.items():
            result.setdefault(record.plugin or "<unregistered>", []).append(key)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Registry):
            return NotImplemented
        return self._kind == other._kind and self._records == other._records

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Registry({self._kind!r}, keys={list(self._records)!r})"

    def _unknown(self, key: object) -> UnknownKeyError | DuplicateKeyError:
        conflict = self.conflict_error(key)  # type: ignore[arg-type]
        if conflict is not None:
            return conflict
        known = list(self._records)
        plural = _plural(self._kind)
        if not known:
            message = (
                f"unknown {_label(self._kind)} {key!r}: no {plural} are registered. "
                "Install the plugin that provides it, and check `nip plugins` for "
                "plugins that failed to load."
            )
            return UnknownKeyError(message, key=str(key), known=())
        message = f"unknown {_label(self._kind)} {key!r}"
        suggestion = closest_key(key, known) if isinstance(key, str) else None
        message += f"; did you mean {suggestion!r}?" if suggestion is not None else "."
        shown = ", ".join(known[:_MAX_KEYS_SHOWN])
        if len(known) > _MAX_KEYS_SHOWN:
            shown += f", ... ({len(known) - _MAX_KEYS_SHOWN} more)"
        message += (
            f" Known {plural}: {shown}. A missing one may come from a plugin that "
            "is not installed or failed to load (see `nip plugins`)."
        )
        return UnknownKeyError(message, key=str(key), known=known)


def _label(kind: str) -> str:
    return kind.replace("_", " ")


def _plural(kind: str) -> str:
    return _label(kind) + "s"


def _duplicate_message(kind: str, key: str, records: Iterable[Contribution]) -> str:
    records = list(records)
    plugins = list(dict.fromkeys(r.plugin for r in records))
    if len(plugins) == 1:
        return (
            f"{describe_origin(records[0])} registered the {_label(kind)} {key!r} "
            f"{len(records)} times; each key may appear once in its registry, so it "
            "cannot be used until the plugin is fixed."
        )
    origins = [describe_origin(r) for r in records]
    named = ", ".join(origins[:-1]) + f" and {origins[-1]}"
    blame = [p for p in plugins if p]
    hint = ""
    if blame:
        hint = (
            " Uninstall one of them, or disable one with "
            f"NIP_DISABLED_PLUGINS={blame[-1]}."
        )
    return (
        f"the {_label(kind)} {key!r} is registered by {len(plugins)} plugins: "
        f"{named}, so it cannot be used.{hint} Every other {_label(kind)} works."
    )
