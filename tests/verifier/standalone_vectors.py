"""Run by tests/verifier/test_standalone.py inside a virtualenv holding only ``verifier`` and its own
third-party dependencies: no server stack, no other project package.

Usage: ``python -I standalone_vectors.py VECTORS_DIR``. It checks that the server stack cannot be
imported, imports the client library, checks that nothing of the server stack or of another project
package was loaded by it, then verifies every golden vector of ``VECTORS_DIR/manifest.json`` as
tests/vectors/test_golden_vectors.py does. Prints ``verifier: PATH`` and ``vectors verified: N``;
exits 1 naming every problem. Only the standard library and ``verifier`` may be imported here.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

MUST_NOT_IMPORT = ("flask", "click", "gunicorn", "psycopg", "pkcs11")
SERVER_STACK = (*MUST_NOT_IMPORT, "werkzeug", "jinja2")
OTHER_PROJECT_PACKAGES = ("keys", "signer", "countersigner", "distributor", "fleetkeys", "bundles", "tests", "witness")


def check_environment(problems: list[str]) -> None:
    for name in MUST_NOT_IMPORT:
        try:
            __import__(name)
        except ImportError:
            continue
        problems.append(f"import {name} succeeded: this environment is not restricted to the verifier")
    import verifier
    import verifier.client
    import verifier.update  # noqa: F401

    loaded = sorted(m for m in sys.modules if m.split(".", 1)[0] in SERVER_STACK + OTHER_PROJECT_PACKAGES)
    if loaded:
        problems.append(f"importing verifier, verifier.client and verifier.update loaded {loaded}")
    print(f"verifier: {verifier.__file__}")


def verify_vectors(vectors: Path, problems: list[str]) -> int:
    """Each case of the manifest, as tests/vectors/test_golden_vectors.py::test_case_outcome; returns how many held."""
    from verifier.errors import VerificationError
    from verifier.trustroot import load_trust_root
    from verifier.update import ClientState, verify_update

    manifest = json.loads((vectors / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != "fleetkeys/vectors/v1":
        problems.append(f"manifest format {manifest.get('format')!r}")
        return 0

    def read(path: str) -> bytes:
        return (vectors / path).read_bytes()

    def consistency(files: dict[str, str]) -> list[bytes]:
        if "consistency" not in files:
            return []
        return [base64.b64decode(h, validate=True) for h in json.loads(read(files["consistency"]))["proof"]]

    verified = 0
    for case in manifest["cases"]:
        name, files, case_problems = case["name"], case["files"], []
        state_bytes = read(case["state"]) if case["state"] else None
        state = ClientState.from_bytes(state_bytes) if state_bytes else ClientState()
        before = state.to_bytes()
        try:
            update = verify_update(read(files["bundle"]), read(files["proof"]), read(files["checkpoint"]),
                                   trust_root=load_trust_root(read(files["trust_root"])), state=state,
                                   now=case["now"], consistency=consistency(files))
        except VerificationError as exc:
            if type(exc).__name__ != case["expect"]:
                case_problems.append(f"raised {type(exc).__name__}: {exc}, expected {case['expect']}")
            if state.to_bytes() != before or state != (ClientState.from_bytes(state_bytes) if state_bytes
                                                       else ClientState()):
                case_problems.append("a failed update changed the caller's state")
        else:
            if case["expect"] != "ok":
                case_problems.append(f"accepted, expected {case['expect']}")
            else:
                result = case["result"]
                got = {"epoch": update.epoch, "fleets": [f.fleet_id for f in update.fleets], "index": update.index,
                       "changed": update.changed}
                want = {k: result[k] for k in got}
                if got != want:
                    case_problems.append(f"result {got}, expected {want}")
                if "state" in result and update.state.to_bytes() != read(result["state"]):
                    case_problems.append(f"new state differs from {result['state']}")
            if state.to_bytes() != before:
                case_problems.append("a successful update changed the caller's state object")
        problems += [f"vector {name}: {p}" for p in case_problems]
        verified += not case_problems
    return verified


def main(argv: list[str]) -> int:
    problems: list[str] = []
    check_environment(problems)
    count = verify_vectors(Path(argv[1]), problems)
    print(f"vectors verified: {count}")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
