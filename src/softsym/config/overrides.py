"""Hydra's refusals of the command line (an override of a key no config has, a config group option that does
not exist, a syntax error), worded as one paragraph that names the option and suggests close matches."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from hydra.errors import CompactHydraException, MissingConfigException

from softsym.config.check import OPEN_MAPPINGS, dotted_keys, unknown_option_message


def command_line_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of a ``softsym`` command line (Hydra's own flags left out)."""
    from hydra._internal.utils import get_args_parser

    try:
        return list(get_args_parser().parse_args(list(argv)).overrides)
    except SystemExit:
        return [a for a in argv if "=" in a and not a.startswith("-")]


def known_keys(overrides: Sequence[str], config_dir: Path) -> list[str]:
    """Every dotted key of the config composed with the command line's group choices (``data=jetclass``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    groups = {str(d.relative_to(config_dir)) for d in config_dir.rglob("*") if d.is_dir()}
    choices = [o for o in overrides if "=" in o and o.split("=", 1)[0].lstrip("+~") in groups and "," not in o]
    GlobalHydra.instance().clear()
    for attempt in (choices, []):
        try:
            with initialize_config_dir(str(config_dir), version_base="1.3"):
                return list(dotted_keys(compose("config", overrides=list(attempt))))
        except Exception:  # noqa: BLE001 - a choice that itself fails: fall back to the defaults
            GlobalHydra.instance().clear()
    return []


def _override_value(key: str, overrides: Sequence[str]) -> str | None:
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+~") == key:
            return value if "=" in override else None
    return None


def composition_error_message(exc: BaseException, argv: Sequence[str], config_dir: Path) -> str | None:
    """One paragraph for a command line that Hydra refused; None for any other exception (a crash)."""
    if not isinstance(exc, CompactHydraException):
        return None
    overrides = command_line_overrides(argv)
    text = str(exc)
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if found:
            group, name = found.groups()
            close = difflib.get_close_matches(name, list(exc.options), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            return f"{group}={name}: there is no config {group}/{name}; expected one of {list(exc.options)}{hint}"
    found = (re.search(r"Could not override '([^']+)'", text)
             or re.search(r"Could not delete from config\. '([^']+)' does not exist", text))
    cause = exc.__cause__
    if found and (cause is None or "not in struct" in str(cause)):
        key = found.group(1)
        value = _override_value(key, overrides)
        shown = f"{key}={value}" if value is not None else key
        parent = key.rsplit(".", 1)[0]
        if "." in key and not text.startswith("Could not delete") and any(
                fnmatchcase(parent, pattern) for pattern in OPEN_MAPPINGS):
            return f"{shown}: {parent} has no key {key.rsplit('.', 1)[1]!r} yet; add it with +{shown}"
        missing = getattr(cause, "full_key", None) or key  # the first level that does not exist
        message = unknown_option_message(missing, None, known_keys(overrides, config_dir))
        return message.replace(f"unknown option {missing}:", f"unknown option {shown}:", 1)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
