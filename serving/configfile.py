"""One TOML configuration file per service: load it with line positions, check it, merge it with the flags.

Every serve command (``fleetkeys signer serve``, ``fleetkeys serve``, ``fleetkeys witness serve``) takes
``--config FILE``. Each service declares its :class:`Schema` next to its command (its ``cli`` module);
this module holds the mechanics they share, and imports no project package (tests/test_boundaries.py).

The file, option by option:

* Its keys are the command's long flag names without ``--`` (``port = 8090`` for ``--port 8090``); a
  repeatable ``URL=VKEY``-style flag is an array of tables (``[[witness]]`` with ``url`` and ``vkey``).
* An unknown key, a value of the wrong TOML type (``port = "8090"`` is not an integer; an integer is
  accepted for a float, a boolean for nothing else), a value out of range or outside its choices (the
  click option's own type decides, so a range is written once, on the flag) and a missing table field
  are errors: :class:`ConfigFileError`, which names the file, the line and the option.
* The file holds no secret: the schemas have no option for a token or a PIN, so ``token = "..."`` is
  an unknown key; tokens and keys are referenced by file path or ``pkcs11:`` URI.
* Precedence (:func:`merge`): a flag given on the command line, or through its environment variable,
  beats the file; the file beats the flag's default. A repeatable flag given at all replaces the
  file's whole array.
* Paths are taken as written (relative ones from the working directory, as on the command line).

Parser: the standard library's :mod:`tomllib` (TOML 1.0, strict, no dependency). It reports the line
of a syntax error in its message but no position for a key, and tomlkit (which keeps the text for
round-trips) exposes none either (python-poetry/tomlkit#55). :func:`line_of` finds a key's line by
parsing growing prefixes of the text with :mod:`tomllib` itself, so the locator never disagrees with
the parser about where a key is (a second, hand-written TOML scanner could, on multi-line strings);
it runs only when an error is reported, at most once per line of the file (a few milliseconds for
the example files; :data:`MAX_SIZE` bounds the rest).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

#: Largest configuration file read, in bytes.
MAX_SIZE = 64 * 1024

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean (true or false)"}
_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column \d+\)$")

PathItem = str | int


class ConfigFileError(click.ClickException):
    """A configuration file that cannot be used: ``FILE:LINE: option NAME: what is wrong`` (exit status 1)."""

    def __init__(self, path: Path | str, message: str, *, option: str | None = None, line: int | None = None) -> None:
        self.path, self.option, self.line = str(path), option, line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: option {option!r}: {message}" if option else f"{where}: {message}")


@dataclass(frozen=True)
class Option:
    """A key of the file (or a field of one of its tables).

    ``param`` is the click parameter the key sets (``None`` for a table field); the value must be of
    TOML type ``kind`` and then passes that parameter's own type (ranges, choices, paths). ``check``
    may refuse a value further by raising :class:`ValueError` (its message is reported with the line).
    """

    key: str
    kind: type
    param: str | None = None
    check: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Tables:
    """An array of tables (``[[key]]``) standing for a repeatable flag ``param``: each table has exactly
    the ``fields`` (all required) and becomes one flag value through ``to_flag`` (so the flag's own
    parser stays the only rule for the value); ``check`` refuses an entry by raising :class:`ValueError`."""

    key: str
    param: str
    fields: tuple[Option, ...]
    to_flag: Callable[[Mapping[str, Any]], str]
    check: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Schema:
    """Every key a service's file may hold; ``required`` names the click parameters needed from either
    the command line or the file (the flags themselves are optional so that the file can give them)."""

    options: tuple[Option, ...]
    tables: tuple[Tables, ...] = ()
    required: tuple[str, ...] = ()

    def names(self) -> list[str]:
        return [o.key for o in self.options] + [t.key for t in self.tables]


@dataclass(frozen=True)
class Loaded:
    """A checked file: ``values`` maps click parameter names to the values it gives."""

    path: Path
    values: Mapping[str, Any] = field(default_factory=dict)


def line_of(text: str, path: tuple[PathItem, ...]) -> int | None:
    """The 1-based line where the key at ``path`` (e.g. ``("witness", 1, "url")``) starts in ``text``, or None.

    The first prefix of whole lines that :mod:`tomllib` parses and that holds ``path`` ends at the line
    where that key's value ends; the key starts after the last parseable prefix without it, on the
    first line there that names it (``key =``, ``"key" =``, ``[key]`` or ``[[key]]``).
    """
    lines = text.splitlines(keepends=True)
    key = next((p for p in reversed(path) if isinstance(p, str)), None)
    if key is None:
        return None
    names = re.compile(r"\s*(\[\[?\s*)?(" + "|".join(re.escape(q) for q in (key, f'"{key}"', f"'{key}'")) + r")\s*[=.\]]")
    last_without = 0
    for n in range(1, len(lines) + 1):
        try:
            doc = tomllib.loads("".join(lines[:n]))
        except tomllib.TOMLDecodeError:
            continue
        if not _holds(doc, path):
            last_without = n
            continue
        return next((i + 1 for i in range(last_without, n) if names.match(lines[i])), n)
    return None


def _holds(doc: Any, path: tuple[PathItem, ...]) -> bool:
    for item in path:
        if isinstance(item, int):
            if not isinstance(doc, list) or item >= len(doc):
                return False
        elif not isinstance(doc, dict) or item not in doc:
            return False
        doc = doc[item]
    return True


def parse(path: Path) -> tuple[dict[str, Any], str]:
    """Read and parse ``path`` (UTF-8 TOML, at most :data:`MAX_SIZE` bytes): the document and its text."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SIZE + 1)
    except OSError as exc:
        raise ConfigFileError(path, f"cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_SIZE:
        raise ConfigFileError(path, f"larger than {MAX_SIZE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(path, f"not UTF-8 (byte {exc.start})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _SYNTAX_POSITION.search(message)
        raise ConfigFileError(path, f"not valid TOML: {_SYNTAX_POSITION.sub('', message).strip()}",
                              line=int(found.group(1)) if found else None) from None


def _type_ok(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    shown = repr(value)
    return f"{shown[:60]}..." if len(shown) > 60 else shown


def load(path: Path, schema: Schema, command: click.Command, ctx: click.Context | None = None) -> Loaded:
    """Parse ``path`` and check it against ``schema``; each value also passes ``command``'s click
    parameter type. :class:`ConfigFileError` (with the line) on the first problem found."""
    doc, text = parse(path)
    params = {p.name: p for p in command.params}
    options = {o.key: o for o in schema.options}
    tables = {t.key: t for t in schema.tables}

    def fail(where: tuple[PathItem, ...], option: str, message: str) -> ConfigFileError:
        return ConfigFileError(path, message, option=option, line=line_of(text, where))

    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key in options:
            opt = options[key]
            values[opt.param] = _checked(opt, value, params.get(opt.param), ctx, lambda m, k=key: fail((k,), k, m))
        elif key in tables:
            values[tables[key].param] = _checked_tables(tables[key], value, ctx, fail)
        else:
            raise fail((key,), key, f"unknown option (the options are: {', '.join(sorted(schema.names()))})")
    return Loaded(Path(path), values)


def _checked(opt: Option, value: Any, param: click.Parameter | None, ctx: click.Context | None,
             fail: Callable[[str], ConfigFileError]) -> Any:
    if not _type_ok(value, opt.kind):
        raise fail(f"expected {_TYPE_NAMES[opt.kind]}, not {_describe(value)}")
    if opt.kind is float:
        value = float(value)
    if param is not None:
        try:
            value = param.type.convert(value, param, ctx)
        except click.BadParameter as exc:
            raise fail(exc.message) from None
    if opt.check is not None:
        try:
            opt.check(value)
        except ValueError as exc:
            raise fail(str(exc)) from None
    return value


def _checked_tables(spec: Tables, value: Any, ctx: click.Context | None,
                    fail: Callable[[tuple[PathItem, ...], str, str], ConfigFileError]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise fail((spec.key,), spec.key, f"expected an array of tables ([[{spec.key}]]), not {_describe(value)}")
    fields = {f.key: f for f in spec.fields}
    flags = []
    for i, table in enumerate(value):
        name = f"{spec.key}[{i}]"
        for key in table:
            if key not in fields:
                raise fail((spec.key, i, key), f"{name}.{key}",
                           f"unknown field (the fields are: {', '.join(sorted(fields))})")
        for key, opt in fields.items():
            if key not in table:
                raise fail((spec.key, i), name, f"missing field {key!r}")
            _checked(opt, table[key], None, ctx, lambda m, k=key, i=i, n=name: fail((spec.key, i, k), f"{n}.{k}", m))
        flag = spec.to_flag(table)
        if spec.check is not None:
            try:
                spec.check(flag)
            except ValueError as exc:
                raise fail((spec.key, i), name, str(exc)) from None
        flags.append(flag)
    return tuple(flags)


#: Where a parameter's value came from when it beats the file.
_EXPLICIT = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def merge(config: Path | None, schema: Schema, given: Mapping[str, Any]) -> dict[str, Any]:
    """The serve command's parameters after its ``--config`` file: ``given`` (the command's keyword
    arguments) where the command line or environment set them, else the file's value, else the default.

    Call it inside the command (it reads :func:`click.get_current_context`). A parameter in
    ``schema.required`` that neither gives is a usage error (exit status 2), as a missing flag was.
    """
    ctx = click.get_current_context()
    merged = dict(given)
    if config is not None:
        for name, value in load(config, schema, ctx.command, ctx).values.items():
            if ctx.get_parameter_source(name) not in _EXPLICIT:
                merged[name] = value
    for name in schema.required:
        if merged.get(name) in (None, ()):
            param = next(p for p in ctx.command.params if p.name == name)
            flag = max(param.opts, key=len)
            key = next((o.key for o in schema.options if o.param == name),
                       next((f"[[{t.key}]]" for t in schema.tables if t.param == name), name))
            raise click.UsageError(f"Missing option '{flag}' (give it, or {key} in the --config file).", ctx)
    return merged


def config_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--config FILE`` option every serve command takes."""
    return click.option("--config", "config", default=None, type=click.Path(dir_okay=False, path_type=Path),
                        help="TOML configuration file (README, Configuration files); flags given beat it.")


__all__ = ["MAX_SIZE", "ConfigFileError", "Loaded", "Option", "Schema", "Tables", "config_option", "line_of", "load",
           "merge", "parse"]
