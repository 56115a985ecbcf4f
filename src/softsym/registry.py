"""One way from a config name to an object: a ``Registry`` per concept (models, penalties, perturbations,
stages, data sources). Entries register themselves with a decorator in the module that defines them; the
package's ``__init__`` imports those modules, so every entry is one click from its name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → factories (classes or functions). ``build(name, **options)`` calls the factory with the
    options of its config; an unknown name raises a ``KeyError`` that lists the choices and close matches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory
        return add

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self.names())
        return self._entries[name]

    def build(self, name: str, /, **options: Any) -> T:
        return self.get(name)(**options)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> Mapping[str, Callable[..., T]]:
        return dict(self._entries)


class UnknownNameError(KeyError):
    """A config names an entry that no registry holds; the message lists the choices and close matches."""

    def __init__(self, kind: str, name: str, choices: list[str]) -> None:
        close = difflib.get_close_matches(str(name), choices, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        self.message = f"unknown {kind} {name!r}: expected one of {choices}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
