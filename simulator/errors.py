"""User-facing errors: one clear line naming the file, the line, the field and what to do.

What this models: nothing physical — it is the contract between bad input and the user. Every
config, profile or workload file is loaded with ``yaml.safe_load`` semantics (no code execution) and
validated by pydantic; a validation failure is turned into ``ConfigError`` with the YAML line of the
offending field, which the CLI prints as a single line and exits with status 2.

Before a YAML file is turned into data it is checked for what no scenario needs and what would
exhaust the machine (README "What servesim refuses and why"): bytes that are not UTF-8 (a UTF-8
byte-order mark is accepted), nesting deeper than :data:`MAX_YAML_DEPTH` (libyaml's composer
recurses on the C stack), aliases that expand past :data:`MAX_YAML_NODES` nodes (the "billion
laughs" file), duplicate keys (YAML says a key is unique; PyYAML silently keeps the last) and
integers longer than :data:`MAX_INT_DIGITS` digits. Any value echoed in an error is clipped to
:data:`ECHO_CHARS` characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it, else the pure-Python one: the same safe
constructors (plain data only, no code execution), ~14× faster on the calibration files."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists accepted (a scenario needs about 8)."""
MAX_YAML_NODES = 100_000
"""Most nodes a YAML document may hold once its aliases are expanded (the biggest shipped file,
a calibration, holds a few thousand)."""
MAX_INT_DIGITS = 100
"""Longest integer literal accepted (no count or size needs more than 20 digits)."""
ECHO_CHARS = 80
"""Longest rendering of a user's value inside an error line."""
MAX_ERROR_CHARS = 1000
"""Longest error line printed."""


def clip(value: Any, n: int = ECHO_CHARS) -> str:
    """``repr(value)`` shortened to ``n`` characters (what an error line echoes of a value)."""
    try:
        text = repr(value)
    except Exception:  # pragma: no cover - a repr that raises
        text = f"<{type(value).__name__}>"
    return clip_text(text, n)


def clip_text(text: str, n: int = ECHO_CHARS) -> str:
    """``text`` shortened to ``n`` characters."""
    return text if len(text) <= n else text[: n - 3] + "..."


def clip_line(msg: str, n: int = MAX_ERROR_CHARS) -> str:
    """One line of at most ``n`` characters: line breaks folded, other control characters (which
    some tools also read as line breaks) escaped."""
    msg = " ".join(str(msg)[: 4 * n].splitlines())
    msg = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                  for ch in msg)
    return msg if len(msg) <= n else msg[: n - 3] + "..."


class ConfigError(ValueError):
    """Bad user input. ``str(err)`` is a single line fit to print as is (folded, control
    characters escaped and cut to :data:`MAX_ERROR_CHARS` here, whoever raised it)."""

    def __init__(self, msg: object = "") -> None:
        super().__init__(clip_line(str(msg)))


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a ConfigError naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{where}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}); save the file as UTF-8") from None


def read_text(path: Path) -> str:
    """A text file's contents as UTF-8 (one-line ConfigError when unreadable or not UTF-8)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read file ({e.strerror or e})") from None
    return decode_text(data, str(path))


def _check_depth(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH before composing (libyaml's composer recurses on
    the C stack: a 100,000-deep list crashes the interpreter)."""
    if text.count("[") + text.count("{") + text.count("- ") + text.count(":") <= MAX_YAML_DEPTH:
        return
    depth = 0
    try:
        for ev in yaml.parse(text, Loader=SAFE_LOADER):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = ev.start_mark.line + 1 if ev.start_mark is not None else 0
                    raise ConfigError(f"{where}:{line}: nested more than {MAX_YAML_DEPTH} levels "
                                      f"deep; no scenario needs that, flatten it")
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # the full parse reports it with its line


def _key_path(path: list[str]) -> str:
    """``a.b.c: `` (nothing at the top level)."""
    return ".".join(path) + ": " if path else ""


def check_nodes(root: yaml.Node, where: str) -> None:
    """Refuse duplicate keys, recursive or over-expanding aliases and overlong integers."""
    size: dict[int, int] = {}
    # iterative post-order walk; an alias is the same node object reached twice
    stack: list[tuple[yaml.Node, list[str], bool]] = [(root, [], False)]
    active: set[int] = set()
    while stack:
        node, path, done = stack.pop()
        nid = id(node)
        if done:
            active.discard(nid)
            if isinstance(node, yaml.MappingNode):
                n = 1 + sum(size[id(k)] + size[id(v)] for k, v in node.value)
            else:
                n = 1 + sum(size[id(c)] for c in node.value)
            size[nid] = n
            if n > MAX_YAML_NODES:
                raise ConfigError(
                    f"{where}:{node.start_mark.line + 1}: {_key_path(path)}its aliases expand "
                    f"to more than {MAX_YAML_NODES:,} values; write the data out instead of "
                    f"nesting aliases")
            continue
        if nid in size:
            continue
        if nid in active:
            raise ConfigError(f"{where}:{node.start_mark.line + 1}: {_key_path(path)}an alias "
                              f"refers to itself (a recursive structure); remove it")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_DIGITS:
                raise ConfigError(
                    f"{where}:{node.start_mark.line + 1}: {_key_path(path)}a "
                    f"{len(node.value)}-digit integer is beyond any count or size servesim "
                    f"models; give a realistic value")
            size[nid] = 1
            continue
        active.add(nid)
        stack.append((node, path, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    line = k.start_mark.line + 1
                    if k.value in seen:
                        raise ConfigError(
                            f"{where}:{line}: {_key_path([*path, k.value])}duplicate key (also "
                            f"on line {seen[k.value]}); keep one of them")
                    seen[k.value] = line
                kname = k.value if isinstance(k, yaml.ScalarNode) else "?"
                stack.append((k, path, False))
                stack.append((v, [*path, clip_text(kname, 40)], False))
        else:
            for i, c in enumerate(node.value):
                stack.append((c, [*path, str(i)], False))


def safe_load(stream: Any, where: str = "<yaml>") -> Any:
    """``yaml.safe_load`` through :data:`SAFE_LOADER`, with the checks of :func:`parse_yaml`."""
    if hasattr(stream, "read"):
        stream = stream.read()
    if isinstance(stream, bytes):
        stream = decode_text(stream, where)
    try:
        return parse_yaml(str(stream), where, raw_errors=True)[0]
    except ConfigError as e:
        msg = str(e)
        if where.startswith("--set") and msg.startswith(f"{where}:1: "):
            msg = f"{where}: {msg[len(where) + 4:]}"  # a --set value has no lines
        raise ConfigError(msg) from None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    found = (k, v)
                    break
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                break
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the parts of a pydantic error location that are not in the input: discriminator tags
    of tagged unions (``arrival.poisson.rate`` → ``arrival.rate``) and validator names."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if isinstance(node, dict):
            if part in node:
                node = node[part]
                out.append(part)
                continue
            if node.get("kind") == part:
                continue
            out.append(part)
            node = None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            out.append(part)
        else:
            out.append(part)
            node = None
    return tuple(out)


def format_validation_error(err: ValidationError, where: str, node: yaml.Node | None = None,
                            prefix: tuple[Any, ...] = (), data: Any = None) -> str:
    """Render the first pydantic error as ``file:line: field: message``."""
    first = err.errors()[0]
    loc = clean_loc(tuple(first["loc"]), data)
    full = prefix + loc
    line = _line_of(node, full) if node is not None else None
    field = ".".join(str(x) for x in full) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field; check the spelling (see the scenario reference in README.md)"
    elif first["type"] == "missing":
        msg = "required field is missing"
    elif "input" in first and first["type"] not in ("value_error", "assertion_error"):
        msg = f"{msg} (got {clip(first['input'])})"
    msg = msg.removeprefix("Value error, ")
    place = f"{where}:{line}" if line else where
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{place}: {field}: {msg}{more}"


def parse_yaml(text: str, where: str, raw_errors: bool = False) -> tuple[Any, yaml.Node | None]:
    """Safe-load YAML text after the checks above: (data, node tree). ``raw_errors``: let a YAML
    syntax error propagate as ``yaml.YAMLError`` (for callers that fall back to the text)."""
    try:
        _check_depth(text, where)
        # One parse: the node tree (for line numbers in errors) and the data built from it.
        loader = SAFE_LOADER(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                check_nodes(node, where)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        if raw_errors:
            raise
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}{line}: invalid YAML: {clip_line(problem, 200)}") from None
    except (ValueError, RecursionError, OverflowError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: cannot read the YAML ({clip_line(str(e), 200)})") from None
    return data, node


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Safe-load a YAML file, returning the data and its node tree (for line numbers)."""
    return parse_yaml(read_text(path), str(path))


def load_yaml_model(path: Path, model: type[M], expected: str = "a mapping at the top level") -> M:
    """Read ``path`` and validate it into ``model``; errors become one-line ``ConfigError``.

    ``expected`` describes the top-level mapping in the error shown when the file is not one.
    """
    data, node = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path), node, data=data)) from None
