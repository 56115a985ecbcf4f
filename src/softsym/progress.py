"""Progress display, decided in one place: bars on a terminal, a line per step otherwise, nothing under CI.

``progress_mode`` makes the decision from the ``progress`` setting (``auto`` | true | false), the ``CI``
environment variable and whether stderr is a terminal. ``progress_bar`` is what every loop of the project
wraps itself in (tqdm's keywords): a tqdm bar on a terminal; with stderr redirected to a file, a plain line per
step (at most one per ``min_interval`` seconds, and always the last), instead of ``\\r`` updates that fill the
file; nothing when disabled.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, TextIO

Mode = Literal["bar", "lines", "off"]
_FALSE = ("", "0", "false", "no", "off")


def under_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when the ``CI`` environment variable is set to anything but ``false``/``0``/empty."""
    value = (os.environ if environ is None else environ).get("CI")
    return value is not None and value.strip().lower() not in _FALSE


def progress_mode(setting: Any = "auto", *, environ: Mapping[str, str] | None = None,
                  stream: TextIO | None = None) -> Mode:
    """How progress is shown: ``off`` for ``false``, and for ``auto`` under CI; otherwise ``bar`` when
    ``stream`` (stderr) is a terminal and ``lines`` when it is not."""
    if isinstance(setting, str):
        setting = setting.strip().lower()
        if setting in _FALSE:
            return "off"
        if setting == "auto":
            if under_ci(environ):
                return "off"
        elif setting not in ("true", "1", "yes", "on"):
            raise ValueError(f"progress={setting!r}: expected auto, true or false")
    elif not setting:
        return "off"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class LineProgress:
    """tqdm's interface, printing ``desc: n/total [postfix]`` lines instead of redrawing a bar."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 stream: TextIO | None = None, min_interval: float = 1.0, unit: str = "it", **_: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self.n = 0
        self.postfix = ""
        self._last_print = -float("inf")
        self._printed_n = -1
        self._start = time.monotonic()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress has no iterable to iterate")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int | float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last_print >= self.min_interval or (self.total is not None and self.n >= self.total):
            self._print(now)

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.n != self._printed_n and self.n:
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        count = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        elapsed = now - self._start
        extra = f" [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {count} {self.unit} ({elapsed:.1f} s){extra}", file=self.stream, flush=True)
        self._last_print, self._printed_n = now, self.n


class SilentProgress(LineProgress):
    """The disabled display: iterates and counts, prints nothing."""

    def _print(self, now: float) -> None:
        self._printed_n = self.n


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, mode: Mode | None = None,
                 **options: Any):
    """A progress display over ``iterable`` (or one driven by ``update``), taking tqdm's keywords.

    ``disable``: nothing is shown (the caller's progress setting is off). Otherwise ``mode`` (default: by
    ``progress_mode(True)``, i.e. whether stderr is a terminal) picks a tqdm bar or a line per step.
    """
    if disable:
        return SilentProgress(iterable, **options)
    mode = mode or progress_mode(True)
    if mode == "bar":
        from tqdm.auto import tqdm

        options.pop("min_interval", None)
        return tqdm(iterable, **options)
    if mode == "lines":
        for key in ("leave", "smoothing", "dynamic_ncols", "position", "mininterval"):
            options.pop(key, None)
        return LineProgress(iterable, **options)
    return SilentProgress(iterable, **options)
