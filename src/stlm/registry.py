"""Name -> builder tables for every extension point (optimizers, losses, schedules, trackers, ...):
`register = registrar(TABLE)` gives the decorator that files a builder under a name."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T]) -> Callable[[str], Callable[[T], T]]:
    """The decorator factory `register(name)` that stores what it decorates in `table[name]`."""

    def register(name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            table[name] = obj
            return obj

        return deco

    return register
