"""Canonical JSON (verifier.cjson): exactly one accepted encoding per value.

Every spelling other than the canonical one (a second encoding of one value: duplicate keys, floats,
whitespace, unsorted keys, needless escapes, invalid UTF-8, excessive nesting...) is a FormatError.
"""

from __future__ import annotations

import pytest

from verifier.cjson import dumps_canonical, loads_canonical
from verifier.errors import FormatError, SizeLimitError


def loads(data: bytes):
    return loads_canonical(data, "test", 1 << 20)


# --- canonical JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b'{"a":1,"b":[true,false,null,-5,"x"]}',
    b'{}', b'[]', b'0', b'-1', b'"\xc3\xa9"', b'"\\n\\t\\"\\\\"', b'"\\u001f"', b'"/"', b'"\x7f"',
    b'{"":0,"A":1,"a":2,"\xc3\xa9":3}',
])
def test_canonical_json_accepted(data):
    assert dumps_canonical(loads(data)) == data


@pytest.mark.parametrize(("desc", "data"), [
    ("duplicate keys", b'{"a":1,"a":1}'),
    ("duplicate keys nested", b'{"a":{"b":1,"b":2}}'),
    ("float", b'1.0'),
    ("float in object", b'{"a":1.5}'),
    ("exponent", b'1e3'),
    ("upper-case exponent", b'1E3'),
    ("negative zero", b'-0'),
    ("NaN", b'NaN'),
    ("Infinity", b'{"a":Infinity}'),
    ("-Infinity", b'[-Infinity]'),
    ("leading space", b' {}'),
    ("trailing newline", b'{}\n'),
    ("space after colon", b'{"a": 1}'),
    ("space after comma", b'[1, 2]'),
    ("tab", b'[1,\t2]'),
    ("unsorted keys", b'{"b":1,"a":2}'),
    ("unsorted nested keys", b'{"a":{"d":1,"c":2}}'),
    ("escaped letter", b'"\\u0041"'),
    ("escaped slash", b'"\\/"'),
    ("escaped non-ASCII", b'"\\u00e9"'),
    ("upper-case escape", b'"\\u001F"'),
    ("long escape for newline", b'"\\u000a"'),
    ("raw control character", b'"a\x01b"'),
    ("raw newline in string", b'"a\nb"'),
    ("leading zero", b'01'),
    ("plus sign", b'+1'),
    ("trailing comma", b'[1,]'),
    ("single quotes", b"{'a':1}"),
    ("invalid UTF-8", b'"\xff"'),
    ("overlong UTF-8", b'"\xc0\xaf"'),
    ("UTF-8 BOM", b'\xef\xbb\xbf{}'),
    ("UTF-16", '{}'.encode("utf-16")),
    ("empty", b''),
    ("two values", b'{}{}'),
    ("huge integer", b'1' * 5000),
    ("nested deeper than 8", b'[' * 10 + b']' * 10),
    ("very deep nesting", b'[' * 100000 + b']' * 100000),
])
def test_canonical_json_rejected(desc, data):
    with pytest.raises(FormatError):
        loads(data)


@pytest.mark.parametrize("data", [b'"\\ud800"', b'{"a":"\\udfff"}', b'{"\\ud83d":1}'])
def test_lone_surrogate_escape_is_a_format_error(data):
    with pytest.raises(FormatError):
        loads(data)


def test_surrogate_pair_escape_is_non_canonical():
    with pytest.raises(FormatError):
        loads(b'"\\ud83d\\udd11"')  # canonical form is the raw UTF-8 of U+1F511
    assert loads('"\U0001f511"'.encode()) == "\U0001f511"


def test_canonical_json_size_limit_and_type():
    with pytest.raises(SizeLimitError):
        loads_canonical(b"[" + b"1," * 100 + b"1]", "x", 100)
    with pytest.raises(FormatError):
        loads_canonical("{}", "x", 100)


def test_dumps_canonical_refuses_floats_and_odd_types():
    for value in (1.0, {"a": float("nan")}, {1: 2}, b"bytes", object(), [[[[[[[[[[1]]]]]]]]]]):
        with pytest.raises(FormatError):
            dumps_canonical(value)
