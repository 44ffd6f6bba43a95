"""Canonical JSON: the one encoding fleetkeys signs and logs.

Canonical form = ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8: object keys sorted by code point, no white space, strings with only the escapes
Python's encoder emits, integers only (no floats, no NaN/Infinity, no exponent), no duplicate keys.

:func:`loads_canonical` parses and then re-encodes: input is accepted only if it is byte-for-byte the
canonical encoding of what it parsed to, so every value has exactly one accepted encoding.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import FormatError, SizeLimitError

MAX_DEPTH = 8


def dumps_canonical(value: Any) -> bytes:
    """Encode ``value`` canonically (raises :class:`FormatError` on floats or non-JSON types)."""
    _check_types(value, 0)
    return _encode(value)


def _encode(value: Any) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FormatError("JSON: a string is not valid Unicode (lone surrogate escape)") from exc


def _check_types(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"JSON nested deeper than {MAX_DEPTH}")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise FormatError("JSON: floats are not allowed")
    if isinstance(value, list):
        for v in value:
            _check_types(v, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise FormatError("JSON: object keys must be strings")
            _check_types(v, depth + 1)
        return
    raise FormatError(f"JSON: unsupported type {type(value).__name__}")


def _check_depth(value: Any, depth: int = 0) -> None:
    """Nesting bound for values from ``json.loads`` with float hooks (only JSON types can occur)."""
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        if depth >= MAX_DEPTH:  # the child is at depth + 1 > MAX_DEPTH, as in _check_types
            raise FormatError(f"JSON nested deeper than {MAX_DEPTH}")
        if isinstance(child, dict | list):
            _check_depth(child, depth + 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"JSON: duplicate object key {k[:40]!r}")
        out[k] = v
    return out


def _reject_float(text: str) -> Any:
    raise FormatError(f"JSON: non-integer number {text[:20]!r}")


def loads_strict(data: bytes, what: str, max_size: int) -> Any:
    """Parse UTF-8 JSON with duplicate keys, floats and NaN/Infinity rejected and a size bound."""
    if not isinstance(data, bytes | bytearray):
        raise FormatError(f"{what}: expected bytes")
    if len(data) > max_size:
        raise SizeLimitError(f"{what}: {len(data)} bytes exceeds the {max_size}-byte limit")
    try:
        text = bytes(data).decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_reject_float,
                           parse_constant=_reject_float)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{what}: not valid JSON ({str(exc)[:120]})") from exc
    try:
        _check_types(value, 0)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from exc
    return value


def loads_canonical(data: bytes, what: str, max_size: int) -> Any:
    """Parse JSON that must be in canonical form (see module docstring).

    Fast path: a plain parse (floats and NaN still rejected by hooks) followed by the byte-exact
    re-encoding check. Duplicate keys need no hook here: the re-encoding of a parse that dropped a
    duplicate is shorter than the input, so it can never match. Only when the check fails is the
    slower :func:`loads_strict` run, to say precisely what is wrong.
    """
    if not isinstance(data, bytes | bytearray):
        raise FormatError(f"{what}: expected bytes")
    if len(data) > max_size:
        raise SizeLimitError(f"{what}: {len(data)} bytes exceeds the {max_size}-byte limit")
    data = bytes(data)
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_reject_float, parse_constant=_reject_float)
        # Nesting is at most the number of containers, and that at most the count of "[" and "{"
        # bytes: counted in C, it spares the walk for every document but those with many brackets.
        if data.count(b"[") + data.count(b"{") > MAX_DEPTH:
            _check_depth(value)
        canonical = _encode(value) == data
    except (FormatError, UnicodeDecodeError, ValueError, RecursionError):
        canonical = False
    if not canonical:
        loads_strict(data, what, max_size)  # raises the precise error if there is one
        raise FormatError(f"{what}: not canonical JSON (keys sorted, no white space, minimal escapes)")
    return value


def expect_object(value: Any, keys: set[str], what: str, optional: set[str] = frozenset()) -> dict[str, Any]:
    """Require a JSON object with exactly ``keys`` (plus any of ``optional``)."""
    if not isinstance(value, dict):
        raise FormatError(f"{what}: expected a JSON object")
    missing = keys - value.keys()
    unknown = value.keys() - keys - optional
    if missing:
        raise FormatError(f"{what}: missing field(s) {sorted(missing)}")
    if unknown:
        raise FormatError(f"{what}: unknown field(s) {sorted(unknown)[:5]}")
    return value


def expect_int(value: Any, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise FormatError(f"{what}: expected an integer in {lo}..{hi}, found {str(value)[:40]!r}")
    return value


def expect_str(value: Any, what: str, max_len: int = 256) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise FormatError(f"{what}: expected a non-empty string of at most {max_len} characters")
    return value
