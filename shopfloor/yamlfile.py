"""Load YAML files into pydantic models with errors that name the file, line and key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
MAX_CONFIG_BYTES = 4 * 1024 * 1024
Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so OFF, on, yes, no stay strings."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


class ConfigError(Exception):
    """A configuration or scenario file is unreadable or invalid; the message says where and why."""


def _line_map(node: yaml.Node, path: Loc, out: dict[Loc, int], seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    out.setdefault(path, node.start_mark.line + 1)
    # Aliases reuse node objects: descend into each node once, so recursive or exponential anchors stay cheap.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            # The key's own line is what a reader looks for, even when the value spans many lines.
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out, seen)


def format_loc(loc: Loc) -> str:
    """Render a pydantic location as a dotted path with [index] for list items."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _best_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    # pydantic may add model names or validator tags to loc; drop trailing parts until a known path.
    parts = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return lines.get(())


def read_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Read a YAML file safely; return the data and a map from key path to line number."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: file is {len(raw)} bytes, larger than the {MAX_CONFIG_BYTES} allowed")
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    lines: dict[Loc, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return data, lines


def validation_message(path: Path, exc: ValidationError, lines: dict[Loc, int], limit: int = 5) -> str:
    """Turn a pydantic ValidationError into lines of 'file:line: key: problem'."""
    out = []
    for err in exc.errors()[:limit]:
        loc = tuple(err["loc"])
        line = _best_line(loc, lines)
        where = f"{path}:{line}" if line is not None else str(path)
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {format_loc(loc)}: {msg}")
    if exc.error_count() > limit:
        out.append(f"... and {exc.error_count() - limit} more error(s)")
    return "\n".join(out)


def load_model(
    path: Path, model: type[M], context: dict[str, Any] | None = None, *, ignore: tuple[str, ...] = ()
) -> M:
    """Load and validate a YAML file as model, leaving out the top-level keys in ignore; raise ConfigError naming
    file, line and key."""
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping at the top level, found {type(data).__name__}")
    for key in ignore:
        data.pop(key, None)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(validation_message(path, exc, lines)) from exc
