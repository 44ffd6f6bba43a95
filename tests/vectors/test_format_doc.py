"""The worked examples and tables of ``bundles/FORMAT.md`` match the code.

Examples sit between ``<!-- vector:NAME:begin -->`` and ``<!-- vector:NAME:end -->`` markers; the
hex in them is read back and compared with what the encoders produce.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import verifier.errors
from verifier import ed25519
from verifier.note import NoteVerifier, key_id
from verifier.statement import Statement, parse_statement

REPO = Path(__file__).resolve().parents[2]
FORMAT_MD = (REPO / "bundles" / "FORMAT.md").read_text(encoding="utf-8")
PLEXI_VECTORS = REPO.parent / "shared" / "vectors" / "plexi" / "test-vectors.json"

# Plexi's test vectors 1 and 2 (plexi_core/tests/test-vectors.json), as FORMAT.md §4 states them.
PLEXI_SEED = bytes.fromhex("d6af1bca3db4fc2766b0c483706c20bf4837a46d54c1d39c2a34a9088572d712")
PLEXI_KEY = bytes.fromhex("606a878700158d92b3a14a0fd37ec82e0f05f92fcf23146abfda2e3a2f10a9bc")
CS1 = Statement(1, "log1.example.com", 1717084639921, 1, bytes([0x11]) * 32)
CS2 = Statement(2, "log2.example.com", 1717084639921, 1, bytes([0x11]) * 32)


def block(name: str) -> str:
    """The text between the begin/end markers of ``name``, code fences removed."""
    match = re.search(rf"<!-- vector:{re.escape(name)}:begin -->\n(.*?)<!-- vector:{re.escape(name)}:end -->",
                      FORMAT_MD, re.DOTALL)
    assert match, f"FORMAT.md has no vector:{name} block"
    return "\n".join(line for line in match.group(1).splitlines() if not line.startswith("```")).strip()


def hex_block(name: str) -> bytes:
    return bytes.fromhex("".join(block(name).split()))


def test_worked_example_ciphersuite_1_is_the_encoding() -> None:
    data = hex_block("statement-cs1")
    assert data == CS1.encode()
    assert len(data) == 65
    assert parse_statement(data) == CS1


def test_worked_example_ciphersuite_2_is_the_encoding() -> None:
    data = hex_block("statement-cs2")
    assert data == CS2.encode()
    assert len(data) == 84
    assert parse_statement(data) == CS2


def test_worked_example_signature_is_plexis() -> None:
    signature = hex_block("statement-cs1-signature")
    assert ed25519.sign_with_seed(PLEXI_SEED, CS1.encode()) == signature
    ed25519.verify(PLEXI_KEY, hex_block("statement-cs1"), signature)
    assert ed25519.public_key_from_seed(PLEXI_SEED) == PLEXI_KEY and PLEXI_KEY[-1] == 188


def test_worked_example_matches_the_published_plexi_file() -> None:
    if not PLEXI_VECTORS.is_file():
        pytest.skip(f"{PLEXI_VECTORS} not present")
    first, second = json.loads(PLEXI_VECTORS.read_text())
    for entry, statement, name in ((first, CS1, "statement-cs1"), (second, CS2, "statement-cs2")):
        assert Statement(entry["ciphersuite"], entry["namespace"], entry["timestamp"], entry["epoch"],
                         bytes.fromhex(entry["digest"])) == statement
        assert entry["signing_key"] == PLEXI_SEED.hex() and entry["verifying_key"] == PLEXI_KEY.hex()
        assert ed25519.sign_with_seed(PLEXI_SEED, hex_block(name)).hex() == entry["signature"]
    assert hex_block("statement-cs1-signature").hex() == first["signature"]


def test_worked_example_vkey_and_key_id() -> None:
    vkey = block("vkey")
    key = NoteVerifier.from_vkey(vkey)
    assert key.vkey == vkey
    assert key.public_key.hex() == "0e732b4541cc0569cf5776bfe8eb387ebcfebde29aa03cbdca787b870d5169b0"
    assert key_id(key.name, 0x01, key.public_key) == key.key_id == 0x6F33F76E


def test_error_tree_lists_every_class() -> None:
    section = FORMAT_MD.split("## 14. Error classes", 1)[1]
    named = set(re.findall(r"[├└]── (\w+)|^(VerifierError)\b", section, re.MULTILINE))
    assert {a or b for a, b in named} == set(verifier.errors.__all__)


_LIMIT_ROW = re.compile(r"^\| [^|]+ \| (?P<value>[^|]+) \| `(?P<const>verifier\.\w+\.[A-Z_0-9]+)` \|", re.MULTILINE)
_NUMBER = re.compile(r"2\^(\d+)(−1)?|\d+")


def _last_number(text: str) -> int:
    text = re.sub(r"\(.*?\)", "", text)
    *_, last = _NUMBER.finditer(text)
    if last.group(1):
        return (1 << int(last.group(1))) - (1 if last.group(2) else 0)
    return int(last.group(0))


def test_size_limit_table_matches_the_constants() -> None:
    import importlib

    rows = list(_LIMIT_ROW.finditer(FORMAT_MD.split("## 12. Size limits", 1)[1].split("\n## ", 1)[0]))
    assert len(rows) >= 20
    for row in rows:
        module, name = row["const"].rsplit(".", 1)
        assert getattr(importlib.import_module(module), name) == _last_number(row["value"]), row.group(0)
