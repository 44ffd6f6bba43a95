"""The dependency rules between the project's packages, read from every module's imports with ``ast``.

* ``verifier`` (the client library and protocol core) imports no other project package, and none of
  the server stack (flask, gunicorn, click, psycopg, pkcs11, werkzeug, jinja2), anywhere in its code.
* ``keys`` (private key custody) imports no project package but ``verifier``.
* A role (``signer``, ``countersigner``, ``distributor``, ``witness``) imports no other role.
* Only the ``fleetkeys`` package (the CLI) imports ``fleetkeys``.
* ``serving`` (the gunicorn shell of the services) imports no project package.

Every import counts: ``import x`` and ``from x import y``, at module level or inside a function or
an ``if TYPE_CHECKING:`` block, relative ones resolved to absolute names, and ``importlib.import_module``
/ ``__import__`` calls with a literal name. A violation names the file, the line and the import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Every package of the project (``witness`` once it exists); ``tests`` is one too, for the rules.
PROJECT = ("verifier", "keys", "signer", "countersigner", "distributor", "fleetkeys", "bundles", "witness", "serving",
           "tests")
#: The packages whose code is checked (``tests`` may import anything).
CHECKED = tuple(p for p in PROJECT if p != "tests")
ROLES = ("signer", "countersigner", "distributor", "witness")
SERVER_STACK = ("flask", "gunicorn", "click", "psycopg", "pkcs11", "werkzeug", "jinja2")


@dataclass(frozen=True)
class Import:
    module: str
    """The absolute dotted name imported (for ``from m import n``: ``m``)."""
    line: int
    text: str
    """The import as written (``from .bundle import parse_bundle``)."""

    @property
    def top(self) -> str:
        return self.module.split(".", 1)[0]


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    text: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text} ({self.rule})"


def module_name(path: str) -> str:
    """``verifier/update.py`` -> ``verifier.update``; ``verifier/__init__.py`` -> ``verifier``."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(path: str, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``path``."""
    if level == 0:
        return module or ""
    package = module_name(path).split(".")
    if Path(path).name != "__init__.py":
        package = package[:-1]  # a module's package is its parent; a package's __init__ is the package
    if level - 1 >= len(package):
        raise ValueError(f"{path}: relative import beyond the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _literal_import_call(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")`` -> ``"x"``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_of(source: str, path: str) -> list[Import]:
    """Every import in ``source`` (the text of the repository file ``path``), wherever it is."""
    tree = ast.parse(source, filename=path)
    lines = source.splitlines()
    found: list[Import] = []

    def text(node: ast.AST) -> str:
        return " ".join(line.strip() for line in lines[node.lineno - 1:node.end_lineno])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, text(node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level and not node.module:
                # ``from . import a, b``: each name may be a submodule of the package
                base = resolve(path, node.level, None)
                found += [Import(f"{base}.{alias.name}", node.lineno, text(node)) for alias in node.names]
            else:
                found.append(Import(resolve(path, node.level, node.module), node.lineno, text(node)))
        elif isinstance(node, ast.Call) and (name := _literal_import_call(node)) is not None:
            found.append(Import(name, node.lineno, text(node)))
    return sorted(found, key=lambda i: (i.line, i.module))


def rule_broken(package: str, imported: Import) -> str | None:
    """The rule ``imported`` breaks when it appears in ``package``'s code, or ``None``."""
    top = imported.top
    if package == "verifier":
        if top in PROJECT and top != "verifier":
            return "verifier imports no other project package"
        if top in SERVER_STACK:
            return "verifier imports nothing of the server stack"
    if package == "serving" and top in PROJECT and top != "serving":
        return "serving imports no project package"
    if package == "keys" and top in PROJECT and top not in ("keys", "verifier"):
        return "keys imports no project package but verifier"
    if package in ROLES and top in ROLES and top != package:
        return f"a role ({package}) imports no other role"
    if top == "fleetkeys" and package != "fleetkeys":
        return "only the fleetkeys package imports fleetkeys"
    return None


def check_source(source: str, path: str) -> list[Violation]:
    package = Path(path).parts[0]
    return [Violation(path, i.line, i.text, rule) for i in imports_of(source, path)
            if (rule := rule_broken(package, i)) is not None]


def project_files() -> dict[str, list[str]]:
    """``{package: [repository-relative paths of its .py files]}`` for every checked package that exists."""
    return {package: sorted(p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py"))
            for package in CHECKED if (REPO / package).is_dir()}


def test_the_packages_are_found():
    files = project_files()
    assert set(files) >= {"verifier", "keys", "signer", "countersigner", "distributor", "fleetkeys", "bundles"}
    for package, paths in files.items():
        assert f"{package}/__init__.py" in paths, package
    assert "verifier/update.py" in files["verifier"]


def test_no_package_breaks_the_dependency_rules():
    violations = [str(v) for paths in project_files().values() for path in paths
                  for v in check_source((REPO / path).read_text(encoding="utf-8"), path)]
    assert violations == [], "dependency rules broken:\n" + "\n".join(violations)


def test_verifier_imports_nothing_of_the_server_stack_anywhere():
    """Stated on its own, with every import listed: the client library must install without a server."""
    found = [f"{path}:{i.line}: {i.text}" for path in project_files()["verifier"]
             for i in imports_of((REPO / path).read_text(encoding="utf-8"), path) if i.top in SERVER_STACK]
    assert found == []


def test_relative_imports_of_the_real_tree_are_resolved():
    """The reader sees what Python sees: verifier/update.py's ``from .bundle import ...`` is verifier.bundle."""
    source = (REPO / "verifier" / "update.py").read_text(encoding="utf-8")
    modules = {i.module for i in imports_of(source, "verifier/update.py")}
    assert {"verifier.bundle", "verifier.errors", "verifier.trustroot"} <= modules
    assert not any(m.startswith(".") or m.startswith("update") for m in modules)


# --- the checker itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "source", "expected"), [
    ("verifier/fake.py", "import flask\n", [(1, "import flask", "server stack")]),
    ("verifier/fake.py", "from psycopg.rows import dict_row\n", [(1, "from psycopg.rows import dict_row", "server stack")]),
    ("verifier/fake.py", "import os\n\ndef f():\n    import pkcs11\n", [(4, "import pkcs11", "server stack")]),
    ("verifier/fake.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from keys import Signer\n",
     [(3, "from keys import Signer", "no other project package")]),
    ("verifier/fake.py", "import keys.files as kf\n", [(1, "import keys.files as kf", "no other project package")]),
    ("verifier/fake.py", "from tests.factory import World\n", [(1, "from tests.factory import World",
                                                                  "no other project package")]),
    ("verifier/fake.py", "import bundles\n", [(1, "import bundles", "no other project package")]),
    ("verifier/fake.py", "import importlib\nimportlib.import_module('click')\n",
     [(2, "importlib.import_module('click')", "server stack")]),
    ("verifier/sub/fake.py", "from ...signer import app\n", None),  # beyond the top level: an error
    ("keys/fake.py", "from distributor.app import create_app\n",
     [(1, "from distributor.app import create_app", "keys imports no project package but verifier")]),
    ("keys/fake.py", "from verifier import ed25519\nfrom . import files\nfrom .errors import KeyError_\n", []),
    ("signer/fake.py", "from ..countersigner import countersign\n", None),
    ("signer/sub/fake.py", "from ...countersigner import countersign\n", None),
    ("countersigner/fake.py", "import signer.wire\n", [(1, "import signer.wire", "a role (countersigner)")]),
    ("distributor/fake.py", "def f():\n    from witness import cosign\n", [(2, "from witness import cosign", "a role")]),
    ("distributor/fake.py", "from .log import Log\nfrom verifier.bundle import verify_bundle\nimport keys\n", []),
    ("distributor/fake.py", "from fleetkeys.cli import main\n", [(1, "from fleetkeys.cli import main",
                                                                     "only the fleetkeys package")]),
    ("bundles/fake.py", "import fleetkeys\n", [(1, "import fleetkeys", "only the fleetkeys package")]),
    ("fleetkeys/fake.py", "from . import cli\nfrom fleetkeys.audit_cli import audit\nimport signer\nimport flask\n", []),
])
def test_checker_reports_forbidden_imports(path, source, expected):
    if expected is None:
        with pytest.raises(ValueError, match="beyond the top-level package"):
            check_source(source, path)
        return
    got = check_source(source, path)
    assert [(v.line, v.text) for v in got] == [(line, text) for line, text, _ in expected], got
    for violation, (_, _, rule) in zip(got, expected, strict=True):
        assert rule in violation.rule and str(violation).startswith(f"{path}:{violation.line}: ")


def test_checker_resolves_relative_imports():
    assert [i.module for i in imports_of("from . import a, b\nfrom .c import d\nfrom .. import e\n",
                                         "distributor/sub/x.py")] == [
        "distributor.sub.a", "distributor.sub.b", "distributor.sub.c", "distributor.e"]
    assert [i.module for i in imports_of("from . import bundle\nfrom .cjson import dumps_canonical\n",
                                         "verifier/__init__.py")] == ["verifier.bundle", "verifier.cjson"]
    # Resolved as Python does: ``..signer`` from countersigner/sub/ is countersigner's own module.
    assert [i.module for i in imports_of("from ..signer import wire\n", "countersigner/sub/x.py")] == [
        "countersigner.signer"]
    assert check_source("from ..signer import wire\n", "countersigner/sub/x.py") == []
    assert [str(v) for v in check_source("from signer import wire\n", "countersigner/sub/x.py")] == [
        "countersigner/sub/x.py:1: from signer import wire (a role (countersigner) imports no other role)"]


def test_checker_fails_the_real_test_on_a_planted_violation(tmp_path, monkeypatch):
    """The whole-tree test fails, naming file, line and import, when one module breaks a rule."""
    for package in ("verifier", "keys"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "verifier" / "client.py").write_text('"""Doc."""\n\nimport json\n\n\ndef f():\n'
                                                     '    from keys.files import load\n    return load\n')
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    with pytest.raises(AssertionError, match=r"verifier/client\.py:7: from keys\.files import load"):
        test_no_package_breaks_the_dependency_rules()
