"""One TOML configuration file per service (``--config FILE``): the example files start real services,
every wrong file is refused naming the option and its line, and flags given beat the file."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import distributor.cli
import signer.cli
import witness.cli
from fleetkeys.cli import main
from keys import generate_key_file
from serving import configfile
from tests.service_process import REPO, ServiceProcess

EXAMPLES = REPO / "examples"
EXAMPLE_ROOT = "/var/lib/fleetkeys"
#: service: (module run with -m, its serve command's argv inside `fleetkeys`, its cli module, ready path)
SERVICES = {
    "signer": ("signer", ["signer", "serve"], signer.cli, "/info"),
    "distributor": ("distributor", ["distributor", "serve"], distributor.cli, "/checkpoint"),
    "witness": ("witness", ["witness", "serve"], witness.cli, "/"),
}


def _example(service: str, root: Path) -> Path:
    """The example file with its paths moved under ``root`` (the only edit), and the keys it names made."""
    text = (EXAMPLES / f"{service}.toml").read_text().replace(EXAMPLE_ROOT, str(root))
    path = root / f"{service}.toml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    doc = tomllib.loads(text)
    for name in ("log-key", "freshness-key", "key"):
        ref = doc.get(name, "")
        key_file = Path(ref.removeprefix("file:"))
        if ref.startswith("file:") and service != "signer":  # the signer makes its default key itself
            key_file.parent.mkdir(parents=True, exist_ok=True)
            generate_key_file(key_file)
    return path


@pytest.mark.parametrize("service", SERVICES)
def test_every_example_file_is_valid(service):
    _, _, cli, _ = SERVICES[service]
    loaded = configfile.load(EXAMPLES / f"{service}.toml", cli.SERVE_SCHEMA, cli.serve_cmd)
    commented_out = ("schema", "trust-root", "metrics-port")
    shown = {o.param for o in cli.SERVE_SCHEMA.options if o.key not in commented_out}
    assert set(loaded.values) == shown | {t.param for t in cli.SERVE_SCHEMA.tables}, "the example shows every option"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_starts_from_its_example_file(service, tmp_path):
    module, _, _, ready = SERVICES[service]
    path = _example(service, tmp_path / "root")
    proc = ServiceProcess([module, "serve", "--config", str(path)], tmp_path / f"{service}.log")  # --port P: a flag
    proc.ready_path = ready
    with proc:
        proc.wait_ready(30.0)
        resp = requests.get(proc.url + ready, timeout=5)
        assert resp.status_code == 200
        if service == "witness":
            assert resp.json()["vkey"].startswith("witness.example/w1+")
        if service == "distributor":
            assert resp.text.startswith("log.fleetkeys.example/v1\n")
            assert (tmp_path / "root" / "distributor" / "log.db").exists()
        if service == "signer":
            assert (tmp_path / "root" / "signer" / "signer.json").exists()
    assert "witnessing log.fleetkeys.example/v1" in proc.log() or service != "witness"


# (service, the line to put in place of the example's line that starts with `replaces`, option named, message part)
BAD = [
    ("signer", "port", 'port = "8090"', "port", "expected an integer, not '8090'"),
    ("signer", "port", "port = 70000", "port", "not in the range 1<=x<=65535"),
    ("signer", "workers", "workers = true", "workers", "expected an integer, not True"),
    ("signer", "threads", "thread = 4", "thread", "unknown option"),
    ("signer", "host", 'token = "s3cret"', "token", "unknown option"),
    ("signer", "key =", 'key = "pkcs11:token=t;object=o?pin-value=1234"', "key", "pin-value"),
    ("signer", "access-log", 'access-log = "yes"', "access-log", "expected a boolean"),
    ("distributor", "freshness-interval", "freshness-interval = 0.5", "freshness-interval", "0.5 is not in the range"),
    ("distributor", "witness-timeout", 'witness-timeout = "5s"', "witness-timeout", "expected a number"),
    ("distributor", "workers", "workers = 2.0", "workers", "expected an integer, not 2.0"),
    ("distributor", "url", 'url = "ftp://w.example"', "witness[0]", "http:// or https://"),
    ("distributor", "url", 'uri = "http://w.example"', "witness[0].uri", "unknown field"),
    ("distributor", "vkey", 'vkey = "nonsense"', "witness[0]", "verifier key"),
    ("distributor", "static =", "static = 1", "static", "expected a boolean"),
    ("witness", "name", 'name = "bad name"', "name", "no white space"),
    ("witness", "vkey", "", "log[0]", "missing field 'vkey'"),
    ("witness", "vkey", 'vkey = "witness.example/w1+20c204f1+BB9DTja/R++SAHsqhZOkTCJGlbT4eYpEmsKACuGyUfKS"', "log[0]",
     "type 0x01"),
    ("witness", "origin", "origin = 7", "log[0].origin", "expected a string, not 7"),
    ("witness", "port", "port = [8095]", "port", "expected an integer, not an array"),
]


@pytest.mark.parametrize(("service", "replaces", "line", "option", "message"), BAD)
def test_a_wrong_file_is_refused_naming_the_option_and_its_line(service, replaces, line, option, message, tmp_path):
    _, argv, _, _ = SERVICES[service]
    lines = (EXAMPLES / f"{service}.toml").read_text().splitlines()
    number = next(i for i, text in enumerate(lines, 1) if text.startswith(replaces))
    lines[number - 1] = line
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, [*argv, "--config", str(path)])
    assert result.exit_code == 1, result.output
    # A missing field or a refused table is reported at the table's header; everything else at the key's line.
    whole_table = "[" in option and "." not in option
    expected = next(i for i in range(number, 0, -1) if lines[i - 1].startswith("[[")) if whole_table else number
    assert f"{path}:{expected}: option {option!r}: " in result.output and message in result.output, result.output
    assert "s3cret" not in result.output


def test_a_toml_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('data = "/tmp/x"\nport = \n')
    result = CliRunner().invoke(main, ["signer", "serve", "--config", str(path)])
    assert result.exit_code == 1 and f"{path}:2: not valid TOML" in result.output, result.output


@pytest.mark.parametrize(("service", "flag", "key"), [("signer", "--data", "data"), ("witness", "--key", "key"),
                                                      ("witness", "--log", "[[log]]")])
def test_a_required_option_given_neither_as_flag_nor_in_the_file_is_a_usage_error(service, flag, key, tmp_path):
    _, argv, _, _ = SERVICES[service]
    text = (EXAMPLES / f"{service}.toml").read_text()
    text = re.sub(rf"^{re.escape(key)}.*$" if not key.startswith("[[") else r"^\[\[log\]\](.|\n)*", "", text, flags=re.M)
    path = tmp_path / "partial.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, [*argv, "--config", str(path)])
    assert result.exit_code == 2 and f"Missing option '{flag}'" in result.output and key in result.output, result.output


@pytest.fixture
def captured(monkeypatch):
    """What each serve command would run with: its serve function records its arguments instead."""
    calls: dict[str, dict] = {}
    monkeypatch.setattr(signer.cli, "serve", lambda data_dir, key_ref, **kw: calls.setdefault(
        "signer", {"data_dir": data_dir, "key_ref": key_ref, **kw}))
    monkeypatch.setattr(witness.cli, "serve", lambda name, key_ref, data_dir, logs, **kw: calls.setdefault(
        "witness", {"name": name, "key_ref": key_ref, "data_dir": data_dir, "log_options": logs, **kw}))
    monkeypatch.setattr(distributor.cli, "_serve", lambda **kw: calls.setdefault("distributor", kw))
    return calls


def test_a_flag_given_beats_the_file_and_the_file_beats_the_default(captured, tmp_path):
    path = tmp_path / "signer.toml"
    path.write_text('data = "/srv/a"\nport = 9000\nthreads = 8\naccess-log = true\n')
    result = CliRunner().invoke(main, ["signer", "serve", "--config", str(path), "--port", "9001", "--no-access-log"])
    assert result.exit_code == 0, result.output
    assert captured["signer"] == {"data_dir": Path("/srv/a"), "key_ref": None, "key_name": "anchor",
                                  "host": "127.0.0.1", "port": 9001, "workers": 1, "threads": 8, "access_log": False,
                                  "metrics_port": None, "metrics_host": "127.0.0.1"}


def test_a_flag_equal_to_its_default_still_beats_the_file(captured, tmp_path):
    path = tmp_path / "signer.toml"
    path.write_text('data = "/srv/a"\nport = 9000\n')
    assert CliRunner().invoke(main, ["signer", "serve", "--config", str(path), "--port", "8090"]).exit_code == 0
    assert captured["signer"]["port"] == 8090


def test_repeated_flags_replace_the_files_tables(captured, tmp_path, monkeypatch):
    path = _example("witness", tmp_path / "root")
    other = "other.example/log=other.example/log+b1f842aa+AYBNhll/WjKuQs5nUfjMwx17YnKHi3yv47ilfGFyrGjJ"
    result = CliRunner().invoke(main, ["witness", "serve", "--config", str(path), "--log", other, "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert captured["witness"]["log_options"] == (other,) and captured["witness"]["workers"] == 3
    assert captured["witness"]["name"] == "witness.example/w1"


def test_the_environment_beats_the_file_like_a_flag(captured, tmp_path):
    path = _example("distributor", tmp_path / "root")
    result = CliRunner().invoke(main, ["serve", "--config", str(path), "--no-static"],
                                env={"FLEETKEYS_DATA": str(tmp_path / "env-data")})
    assert result.exit_code == 0, result.output
    got = captured["distributor"]
    assert got["data_dir"] == str(tmp_path / "env-data") and got["static"] is False
    assert got["port"] == 8080 and got["freshness_interval"] == 60.0 and len(got["witnesses"]) == 1
    assert got["schema"] is None  # neither the flag nor the file: the default


def test_the_readme_documents_every_option_of_every_file():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Configuration files"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for service, (_, _, cli, _) in SERVICES.items():
        table = section[section.index(f"`examples/{service}.toml`"):]
        table = table[:table.index("\n\n", table.index("\n| "))]  # the table right after the file's name
        documented = set(re.findall(r"^\| `([^`]+)`", table, flags=re.M))
        for key in cli.SERVE_SCHEMA.names():
            assert key in documented or any(d.startswith(f"[[{key}]]") for d in documented), (service, key)


# --- the TOML-loading edge -------------------------------------------------------------------------

_keys = st.from_regex(r"[a-z][a-z0-9-]{0,11}", fullmatch=True)
_values = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    # Values that look like other assignments on later lines: the locator must not be fooled.
    _keys.map(lambda k: f'"""\n{k} = 1\n"""'),
    _keys.map(lambda k: f"[\n  1, # {k} = 2\n  3,\n]"),
)
_filler = st.sampled_from(["", "# a comment", "   ", "# port = 1"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_keys, st.tuples(_values, _filler), min_size=1, max_size=8))
def test_line_of_finds_the_line_of_every_key(doc):
    text, expected = "", {}
    for key, (value, filler) in doc.items():
        if filler:
            text += filler + "\n"
        expected[key] = text.count("\n") + 1
        text += f"{key} = {value}\n"
    assert set(tomllib.loads(text)) == set(doc)
    for key, line in expected.items():
        assert configfile.line_of(text, (key,)) == line, (key, text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_file_is_either_loaded_or_refused_with_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("c") / "any.toml"
    path.write_bytes(data)
    try:
        configfile.load(path, signer.cli.SERVE_SCHEMA, signer.cli.serve_cmd)
    except configfile.ConfigFileError as exc:
        assert str(exc).startswith(str(path))


def test_locating_a_key_in_a_long_file_stays_fast():
    text = "".join(f"key{i} = {i}  # padding padding padding\n" for i in range(400))
    start = time.perf_counter()
    assert configfile.line_of(text, ("key399",)) == 400
    assert time.perf_counter() - start < 2.0
