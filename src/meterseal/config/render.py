"""A configuration file's text: every known key commented, the given ones set.

Hand-written rather than tomli-w: the values are flat strings, paths, numbers and booleans,
and the loader has to work on the core install, which has no TOML writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meterseal.config.settings import KEYS, SECTIONS, KeySpec, check_value
from meterseal.errors import ConfigurationError


def toml_value(value: Any) -> str:
    """`value` (str, Path, bool, int or float) as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = value.as_posix()
    if isinstance(value, str):
        # A JSON string is a TOML basic string (quotes, backslashes and controls escaped)
        # but for DEL, which TOML also wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    raise ConfigurationError(f"cannot write {type(value).__name__} {value!r} to TOML")


def _comment(spec: KeySpec) -> str:
    text = spec.help
    if spec.derived:
        text += f"; default: {spec.derived}"
    elif spec.default is not None:
        text += f"; default: {toml_value(spec.default)}"
    return f"# {text} (env {spec.env})"


def render_config(values: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A commented meterseal.toml setting `values` ({section: {key: value}}); others commented out.

    Values are checked as the loader checks them (ConfigurationError on an unknown key or a
    wrong type). Relative paths are written as given: the loader resolves them against the
    file's directory.
    """
    given = values or {}
    for section, keys in given.items():
        for name in keys:
            spec = KEYS.get(f"{section}.{name}")
            if spec is None:
                known = ", ".join(k.key for k in KEYS.values())
                raise ConfigurationError(f"unknown key {section}.{name} (known: {known})")
            check_value(spec, str(keys[name]) if spec.kind is Path else keys[name])
    lines = [
        "# meterseal configuration: `meterseal config show` prints what every command uses.",
        "# Precedence: command-line flag > environment variable > this file > default.",
        "# Relative paths are relative to this file's directory. No secrets here:",
        "# passphrases stay in the environment (deployment.passphrase_env names the variable).",
    ]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for spec in (s for s in KEYS.values() if s.section == section):
            lines.append(_comment(spec))
            if spec.name in given.get(section, {}):
                lines.append(f"{spec.name} = {toml_value(given[section][spec.name])}")
            else:
                example = spec.example or spec.default
                lines.append(f"# {spec.name} = {toml_value(example)}")
    return "\n".join(lines) + "\n"
