"""Signing-key backends (keys/): key files, PKCS#11 on a real SoftHSM2 token, in-memory keys.

No mocks: key files are real files with real modes, PKCS#11 keys live in a SoftHSM2 token made by
tests/softhsm.py, and every signature is checked by independent verifiers (libsodium through
verifier.ed25519 and PyNaCl, OpenSSL through pyca cryptography).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import urllib.parse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.signing import VerifyKey

from keys import (
    FileSigner,
    InMemorySigner,
    KeyBackendError,
    Pkcs11Signer,
    Signer,
    check_no_pin_value,
    generate_key_file,
    generate_pkcs11_key,
    load_key_file,
    load_signer,
    parse_pkcs11_uri,
    pkcs11_reinitialize,
)
from tests.softhsm import SoftHSMToken, make_token, requires_softhsm
from verifier import ed25519
from verifier.errors import SignatureError

MESSAGE = b"fleetkeys/test message\n\x00\xff"


def verify_everywhere(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check a signature with three independent verifiers (strict libsodium, PyNaCl, OpenSSL)."""
    assert len(signature) == 64
    ed25519.verify(public_key, message, signature)
    VerifyKey(public_key).verify(message, signature)
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)


def write_private(path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


# --------------------------------------------------------------------------------------------------
# In-memory keys (RFC 8032 §7.1 vectors)

RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd"
     "25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8"
     "c387b2eaeb4302aeeb00d291612bb0c00"),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_in_memory_signer_reproduces_rfc8032_vectors(seed, public, message, signature):
    signer = InMemorySigner(bytes.fromhex(seed))
    assert signer.public_key == bytes.fromhex(public)
    assert signer.sign(bytes.fromhex(message)) == bytes.fromhex(signature)
    assert isinstance(signer, Signer)


def test_in_memory_signer_rejects_bad_seed_and_hides_it():
    with pytest.raises(KeyBackendError, match="32 bytes"):
        InMemorySigner(b"\x01" * 31)
    seed = bytes.fromhex(RFC8032[0][0])
    signer = InMemorySigner(seed)
    assert seed.hex() not in repr(signer)
    assert RFC8032[0][1] in repr(signer)
    with pytest.raises(TypeError):
        signer.sign("not bytes")  # type: ignore[arg-type]
    assert signer.sign(bytearray(b"x")) == signer.sign(b"x") == signer.sign(memoryview(b"x"))


# --------------------------------------------------------------------------------------------------
# Key files


def test_file_round_trip(tmp_path):
    path = tmp_path / "anchor.pem"
    public_key = generate_key_file(path)
    assert len(public_key) == 32
    for ref in (f"file:{path}", str(path), path, f"file://{urllib.parse.quote(str(path))}"):
        signer = load_signer(ref)
        assert isinstance(signer, FileSigner)
        assert isinstance(signer, Signer)
        assert signer.public_key == public_key
        signature = signer.sign(MESSAGE)
        verify_everywhere(public_key, MESSAGE, signature)
        with pytest.raises(SignatureError):
            ed25519.verify(public_key, MESSAGE + b"!", signature)
    # The file is an ordinary PKCS#8 PEM that OpenSSL reads; its signatures are the same (Ed25519 is
    # deterministic).
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(data, None)
    assert isinstance(key, Ed25519PrivateKey)
    assert key.sign(MESSAGE) == load_signer(str(path)).sign(MESSAGE)


def test_generated_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "k.pem"
        generate_key_file(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_ISREG(path.stat().st_mode)


def test_generate_refuses_to_overwrite(tmp_path):
    path = tmp_path / "k.pem"
    path.write_bytes(b"precious")
    with pytest.raises(KeyBackendError, match="refusing to overwrite"):
        generate_key_file(path)
    assert path.read_bytes() == b"precious"
    # Nor through a symlink, even a dangling one.
    target = tmp_path / "elsewhere.pem"
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    with pytest.raises(KeyBackendError, match="refusing to overwrite"):
        generate_key_file(link)
    assert not target.exists()
    # A second key at the same path after a first one: refused too.
    fresh = tmp_path / "fresh.pem"
    public_key = generate_key_file(fresh)
    with pytest.raises(KeyBackendError):
        generate_key_file(fresh)
    assert load_signer(str(fresh)).public_key == public_key


def test_generate_into_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(KeyBackendError, match="cannot create"):
        generate_key_file(tmp_path / "no" / "such" / "dir.pem")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o610])
def test_group_or_other_readable_key_file_refused(tmp_path, mode):
    path = tmp_path / "k.pem"
    generate_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(KeyBackendError, match=r"too open.*chmod 600") as info:
        load_signer(str(path))
    assert f"{mode:04o}" in str(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_key_file_accepted(tmp_path, mode):
    path = tmp_path / "k.pem"
    public_key = generate_key_file(path)
    os.chmod(path, mode)
    assert load_signer(str(path)).public_key == public_key


def test_encrypted_key_with_passphrase_env(tmp_path, monkeypatch):
    path = tmp_path / "k.pem"
    passphrase = b"correct horse battery staple"
    public_key = generate_key_file(path, passphrase=passphrase)
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    with pytest.raises(KeyBackendError, match="encrypted and no passphrase"):
        load_signer(f"file:{path}")

    monkeypatch.setenv("FLEETKEYS_KEY_PASSPHRASE", passphrase.decode())
    signer = load_signer(f"file:{path}")
    assert signer.public_key == public_key
    verify_everywhere(public_key, MESSAGE, signer.sign(MESSAGE))

    # Another variable name, e.g. one per key.
    monkeypatch.delenv("FLEETKEYS_KEY_PASSPHRASE")
    monkeypatch.setenv("ANCHOR_KEY_PASS", passphrase.decode())
    assert load_signer(str(path), passphrase_env="ANCHOR_KEY_PASS").public_key == public_key
    # An empty value counts as unset.
    monkeypatch.setenv("ANCHOR_KEY_PASS", "")
    with pytest.raises(KeyBackendError, match="no passphrase"):
        load_signer(str(path), passphrase_env="ANCHOR_KEY_PASS")


def test_wrong_passphrase_is_a_key_backend_error_without_the_passphrase(tmp_path, monkeypatch):
    path = tmp_path / "k.pem"
    generate_key_file(path, passphrase=b"right-passphrase")
    monkeypatch.setenv("FLEETKEYS_KEY_PASSPHRASE", "Wrong-Passphrase-9")
    with pytest.raises(KeyBackendError, match="wrong passphrase") as info:
        load_signer(str(path))
    assert "Wrong-Passphrase-9" not in str(info.value)
    assert "right-passphrase" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_passphrase_is_ignored_for_unencrypted_key(tmp_path, monkeypatch):
    path = tmp_path / "k.pem"
    public_key = generate_key_file(path)
    monkeypatch.setenv("FLEETKEYS_KEY_PASSPHRASE", "set for some other key")
    assert load_signer(str(path)).public_key == public_key


def test_generate_rejects_empty_or_text_passphrase(tmp_path):
    with pytest.raises(KeyBackendError, match="non-empty bytes"):
        generate_key_file(tmp_path / "a.pem", passphrase=b"")
    with pytest.raises(KeyBackendError, match="non-empty bytes"):
        generate_key_file(tmp_path / "b.pem", passphrase="text")  # type: ignore[arg-type]
    assert not (tmp_path / "a.pem").exists() and not (tmp_path / "b.pem").exists()


def test_load_key_file_with_explicit_passphrase(tmp_path):
    path = tmp_path / "k.pem"
    public_key = generate_key_file(path, passphrase=b"pw-from-a-prompt")
    assert load_key_file(path, passphrase=b"pw-from-a-prompt").public_key == public_key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_key_reencrypted_with_scrypt_by_openssl_loads(tmp_path, monkeypatch):
    """The documented way to a stronger KDF than BestAvailableEncryption's: openssl pkcs8 -scrypt."""
    plain = tmp_path / "plain.pem"
    public_key = generate_key_file(plain)
    strong = tmp_path / "strong.pem"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-scrypt", "-in", str(plain), "-out", str(strong),
                    "-passout", "env:TEST_PASS"], check=True, capture_output=True,
                   env={**os.environ, "TEST_PASS": "pw"})
    os.chmod(strong, 0o600)
    assert strong.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    monkeypatch.setenv("FLEETKEYS_KEY_PASSPHRASE", "pw")
    assert load_signer(str(strong)).public_key == public_key


def test_non_ed25519_and_non_pkcs8_files_refused(tmp_path):
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(tmp_path / "p256.pem", p256)
    with pytest.raises(KeyBackendError, match="expected an Ed25519 key"):
        load_signer(str(tmp_path / "p256.pem"))

    openssh = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    write_private(tmp_path / "id_ed25519", openssh)
    with pytest.raises(KeyBackendError, match="OPENSSH PRIVATE KEY"):
        load_signer(str(tmp_path / "id_ed25519"))

    write_private(tmp_path / "junk.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyBackendError, match="malformed"):
        load_signer(str(tmp_path / "junk.pem"))

    write_private(tmp_path / "empty.pem", b"")
    with pytest.raises(KeyBackendError, match="exactly one PEM block"):
        load_signer(str(tmp_path / "empty.pem"))

    one = (tmp_path / "one.pem")
    generate_key_file(one)
    write_private(tmp_path / "two.pem", one.read_bytes() * 2)
    with pytest.raises(KeyBackendError, match="exactly one PEM block, found 2"):
        load_signer(str(tmp_path / "two.pem"))


def test_bad_paths_and_references(tmp_path):
    with pytest.raises(KeyBackendError, match="no such file"):
        load_signer(str(tmp_path / "missing.pem"))
    with pytest.raises(KeyBackendError, match="not a regular file"):
        load_signer(f"file:{tmp_path}")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyBackendError, match="not a regular file"):  # and does not hang
        load_signer(str(fifo))
    big = tmp_path / "big.pem"
    write_private(big, b"x" * (64 * 1024 + 1))
    with pytest.raises(KeyBackendError, match="larger than"):
        load_signer(str(big))
    with pytest.raises(KeyBackendError, match="unsupported scheme 'kms:'"):
        load_signer("kms:projects/x/keys/y")
    with pytest.raises(KeyBackendError, match="empty"):
        load_signer("")
    with pytest.raises(KeyBackendError, match="local absolute path"):
        load_signer("file://host/etc/key.pem")


# --------------------------------------------------------------------------------------------------
# pkcs11: URI parsing (no token needed)


def test_parse_pkcs11_uri_percent_decoding_and_attributes():
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20Token;object=anchor%3Bkey;id=%01%ff;serial=abc;slot-id=7;type=private"
        "?module-path=/usr/lib/x%20y/p11.so&pin-value=12%2634")
    assert uri.token == "My Token"
    assert uri.object == "anchor;key"
    assert uri.id == b"\x01\xff"
    assert uri.serial == "abc"
    assert uri.slot_id == 7
    assert uri.module_path == "/usr/lib/x y/p11.so"
    assert uri.pin_value == "12&34"
    assert "12&34" not in repr(uri) and "12&34" not in uri.describe()
    assert parse_pkcs11_uri("pkcs11:token=t;id=%00?pin-source=file:/run/pin").pin_source == "file:/run/pin"
    assert parse_pkcs11_uri("pkcs11:token=%E2%9C%93;object=k").token == "\u2713"


@pytest.mark.parametrize(("ref", "message"), [
    ("pkcs11:token=t;object=k;objet=x", "unsupported path attribute 'objet'"),
    ("pkcs11:token=t;object=k;library-description=x", "unsupported path attribute"),
    ("pkcs11:token=t;object=k?module-name=softhsm2", "unsupported query attribute 'module-name'"),
    ("pkcs11:token=t;object=k;token=u", "more than once"),
    ("pkcs11:token=t;object=", "is empty"),
    ("pkcs11:token=t;object=k%2", "malformed percent-escape"),
    ("pkcs11:token=t;object=k%zz", "malformed percent-escape"),
    ("pkcs11:token=t;object=%ff", "not UTF-8"),
    ("pkcs11:token=t;object=k;type=public", "type=private"),
    ("pkcs11:token=t;object=k;slot-id=x1", "decimal"),
    ("pkcs11:token=t;object=k?pin-value=1&pin-source=file:/p", "not both"),
    ("pkcs11:token=t;object=k?module-path=lib.so", "absolute"),
    ("pkcs11:object=k", "no token selected"),
    ("pkcs11:token=t", "no key selected"),
    ("pkcs11:token=t;object", "has no '=value'"),
    ("pkcs12:token=t;object=k", "must start with 'pkcs11:'"),
])
def test_parse_pkcs11_uri_rejects(ref, message):
    with pytest.raises(KeyBackendError, match=message):
        parse_pkcs11_uri(ref)


def test_pkcs11_errors_never_echo_the_pin():
    with pytest.raises(KeyBackendError) as info:
        load_signer("pkcs11:token=t;object=k;bogus=1?pin-value=SuperSecretPin")
    assert "SuperSecretPin" not in str(info.value)


def test_pin_value_in_an_argv_key_reference_is_refused_before_any_pkcs11_call(monkeypatch):
    """A PIN in a key reference on a command line is readable in /proc/<pid>/cmdline: refused by default."""
    monkeypatch.setenv("FLEETKEYS_PKCS11_MODULE", "/nonexistent/libp11.so")  # proves nothing is loaded first
    ref = "pkcs11:token=t;object=k?pin-value=SuperSecretPin"
    for call in (lambda: load_signer(ref), lambda: check_no_pin_value(ref)):
        with pytest.raises(KeyBackendError, match="pin-value") as info:
            call()
        message = str(info.value)
        assert "pin-source" in message and "FLEETKEYS_PKCS11_PIN" in message and "SuperSecretPin" not in message
    check_no_pin_value("pkcs11:token=t;object=k?pin-source=file:/p")
    check_no_pin_value("file:/some/key.pem")
    with pytest.raises(KeyBackendError, match="no such file"):  # allowed: it goes on to load the module
        load_signer(ref, allow_pin_value=True)


# --------------------------------------------------------------------------------------------------
# PKCS#11 on a real SoftHSM2 token


@requires_softhsm
def test_pkcs11_pin_value_loads_only_when_the_caller_allows_it(token: SoftHSMToken):
    public_key = token.generate_key("anchor")
    with pytest.raises(KeyBackendError, match="pin-source") as info:
        load_signer(token.key_ref("anchor"))
    assert token.pin not in str(info.value)
    assert load_signer(token.key_ref("anchor"), allow_pin_value=True).public_key == public_key
    assert load_signer(token.key_ref("anchor", pin_source=True)).public_key == public_key


@requires_softhsm
def test_pkcs11_generate_load_sign_verify(token: SoftHSMToken):
    public_key = token.generate_key("anchor")
    assert len(public_key) == 32
    signer = load_signer(token.key_ref("anchor"), allow_pin_value=True)  # the library may allow pin-value
    assert isinstance(signer, Pkcs11Signer)
    assert isinstance(signer, Signer)
    assert signer.public_key == public_key
    for message in (MESSAGE, b"", os.urandom(1000)):
        signature = signer.sign(message)
        verify_everywhere(public_key, message, signature)
        # Pure Ed25519 is deterministic: the same message gives the same signature.
        assert signer.sign(message) == signature
    assert token.pin not in repr(signer)
    signer.close()


@requires_softhsm
def test_pkcs11_key_attributes_are_safe(token: SoftHSMToken):
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token.generate_key("anchor")
    tok = pkcs11.lib(token.module).get_token(token_label=token.label)
    with tok.open(user_pin=token.pin) as session:
        priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="anchor")
        pub = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label="anchor")
        assert priv[Attribute.TOKEN] and priv[Attribute.PRIVATE] and priv[Attribute.SENSITIVE]
        assert not priv[Attribute.EXTRACTABLE]
        assert priv[Attribute.SIGN] and not priv[Attribute.DECRYPT] and not priv[Attribute.DERIVE]
        assert pub[Attribute.TOKEN] and pub[Attribute.VERIFY]
        assert pub[Attribute.EC_PARAMS] == bytes.fromhex("06032b6570")
        assert len(priv[Attribute.ID]) == 16 and priv[Attribute.ID] == pub[Attribute.ID]
        point = pub[Attribute.EC_POINT]
        assert point[:2] == b"\x04\x20" and len(point) == 34


@requires_softhsm
def test_pkcs11_key_persists_across_module_reinitialisation(token: SoftHSMToken):
    public_key = token.generate_key("log")
    signer = load_signer(token.key_ref("log", pin_source=True))
    pkcs11_reinitialize(token.module)  # every session and login of the process is gone
    # The signer logs in again by itself and keeps working; a new load finds the stored key.
    verify_everywhere(public_key, MESSAGE, signer.sign(MESSAGE))
    assert load_signer(token.key_ref("log", pin_source=True)).public_key == public_key


@requires_softhsm
def test_pkcs11_wrong_pin(token: SoftHSMToken):
    token.generate_key("anchor")
    ref = token.key_ref("anchor", pin=False) + "&pin-value=98765"
    with pytest.raises(KeyBackendError, match="incorrect PIN") as info:
        load_signer(ref, allow_pin_value=True)
    assert "98765" not in str(info.value)
    assert token.pin not in str(info.value)
    assert info.value.__cause__ is None


@requires_softhsm
def test_pkcs11_wrong_pin_while_token_logged_in(token: SoftHSMToken):
    """PKCS#11 cannot check a PIN while the process is logged in: a different PIN is refused."""
    token.generate_key("anchor")
    good = load_signer(token.key_ref("anchor", pin_source=True))
    with pytest.raises(KeyBackendError, match="different PIN") as info:
        load_signer(token.key_ref("anchor", pin=False) + "&pin-value=98765", allow_pin_value=True)
    assert "98765" not in str(info.value)
    verify_everywhere(good.public_key, MESSAGE, good.sign(MESSAGE))


@requires_softhsm
def test_pkcs11_missing_object_and_token(token: SoftHSMToken):
    token.generate_key("anchor")
    with pytest.raises(KeyBackendError, match="no such private key") as info:
        load_signer(token.key_ref("no-such-key", pin_source=True))
    assert "object=no-such-key" in str(info.value)
    assert token.pin not in str(info.value)
    other = SoftHSMToken(module=token.module, label="nope", pin=token.pin, so_pin=token.so_pin,
                         conf_path=token.conf_path, tokendir=token.tokendir)
    with pytest.raises(KeyBackendError, match="no such token"):
        load_signer(other.key_ref("anchor", pin_source=True))
    with pytest.raises(KeyBackendError, match="no such token"):
        generate_pkcs11_key(module=token.module, token="nope", pin=token.pin, label="k")
    # A missing object does not leave the token logged in: a wrong PIN is checked for real afterwards.
    with pytest.raises(KeyBackendError, match="incorrect PIN"):
        load_signer(token.key_ref("anchor", pin=False) + "&pin-value=0000", allow_pin_value=True)


@requires_softhsm
def test_pkcs11_generate_refuses_existing_label(token: SoftHSMToken):
    public_key = token.generate_key("anchor")
    with pytest.raises(KeyBackendError, match="already exists"):
        token.generate_key("anchor")
    assert load_signer(token.key_ref("anchor", pin_source=True)).public_key == public_key


@requires_softhsm
def test_pkcs11_non_ed25519_object_refused(token: SoftHSMToken):
    import pkcs11

    tok = pkcs11.lib(token.module).get_token(token_label=token.label)
    with tok.open(rw=True, user_pin=token.pin) as session:
        session.generate_keypair(pkcs11.KeyType.RSA, 2048, label="rsa", store=True)
    with pytest.raises(KeyBackendError, match="not an Ed25519 key"):
        load_signer(token.key_ref("rsa", pin_source=True))


@requires_softhsm
def test_pkcs11_several_keys_and_signers_share_one_login(token: SoftHSMToken):
    """Closing one signer or generating a key must not log out the other signers (PKCS#11 logins
    belong to the process, and C_Logout on any session ends them all)."""
    a_pub = token.generate_key("a")
    a = load_signer(token.key_ref("a", pin_source=True))
    b_pub = token.generate_key("b")  # logs in and out around the generation
    verify_everywhere(a_pub, MESSAGE, a.sign(MESSAGE))
    b = load_signer(token.key_ref("b", pin_source=True))
    a2 = load_signer(token.key_ref("a", pin_source=True))
    a.close()
    with pytest.raises(KeyBackendError, match="closed"):
        a.sign(MESSAGE)
    verify_everywhere(b_pub, MESSAGE, b.sign(MESSAGE))
    verify_everywhere(a_pub, MESSAGE, a2.sign(MESSAGE))
    with b, a2:
        pass
    # All released: the token is logged out, so a wrong PIN is checked for real again.
    with pytest.raises(KeyBackendError, match="incorrect PIN"):
        load_signer(token.key_ref("a", pin=False) + "&pin-value=0000", allow_pin_value=True)


@requires_softhsm
def test_pkcs11_two_tokens(tmp_path):
    first = make_token(tmp_path, label="anchor-hsm", pin="1111")
    second = make_token(tmp_path, label="operator hsm", pin="2222")
    p1 = first.generate_key("k")
    p2 = second.generate_key("k")
    s1 = load_signer(first.key_ref("k", pin_source=True))
    s2 = load_signer(second.key_ref("k", pin_source=True))
    assert p1 != p2
    verify_everywhere(p1, MESSAGE, s1.sign(MESSAGE))
    verify_everywhere(p2, MESSAGE, s2.sign(MESSAGE))


@requires_softhsm
def test_pkcs11_pin_source_file(token: SoftHSMToken, tmp_path):
    public_key = token.generate_key("anchor")
    pin_file = tmp_path / "pin"
    write_private(pin_file, token.pin.encode() + b"\n")
    signer = load_signer(token.key_ref("anchor", pin=False) + f"&pin-source=file:{pin_file}")
    verify_everywhere(public_key, MESSAGE, signer.sign(MESSAGE))
    signer.close()
    absolute = load_signer(token.key_ref("anchor", pin=False) + f"&pin-source={pin_file}")
    assert absolute.public_key == public_key
    absolute.close()
    os.chmod(pin_file, 0o644)
    with pytest.raises(KeyBackendError, match="too open"):
        load_signer(token.key_ref("anchor", pin=False) + f"&pin-source=file:{pin_file}")
    with pytest.raises(KeyBackendError, match="no such file"):
        load_signer(token.key_ref("anchor", pin=False) + f"&pin-source=file:{tmp_path}/none")


@requires_softhsm
def test_pkcs11_environment_fallbacks(token: SoftHSMToken, monkeypatch):
    public_key = token.generate_key("anchor")
    bare = token.key_ref("anchor", pin=False, module=False)
    assert "?" not in bare and token.pin not in bare
    with pytest.raises(KeyBackendError, match="no PIN"):
        load_signer(bare)
    monkeypatch.setenv("FLEETKEYS_PKCS11_PIN", token.pin)
    monkeypatch.setenv("FLEETKEYS_PKCS11_MODULE", token.module)
    signer = load_signer(bare)
    verify_everywhere(public_key, MESSAGE, signer.sign(MESSAGE))
    signer.close()
    monkeypatch.setenv("FLEETKEYS_PKCS11_MODULE", "/nonexistent/libp11.so")
    with pytest.raises(KeyBackendError, match="no such file"):
        load_signer(bare)


@requires_softhsm
def test_pkcs11_threaded_signing(token: SoftHSMToken):
    public_key = token.generate_key("anchor")
    signer = load_signer(token.key_ref("anchor", pin_source=True))
    threads, per_thread = 8, 20
    barrier = threading.Barrier(threads)
    results: list[tuple[bytes, bytes]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                message = f"thread {n} message {i}".encode()
                signature = signer.sign(message)
                with lock:
                    results.append((message, signature))
        except BaseException as exc:  # reported by the assertion below
            with lock:
                errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == threads * per_thread
    assert len({m for m, _ in results}) == threads * per_thread
    for message, signature in results:
        verify_everywhere(public_key, message, signature)


@requires_softhsm
def test_file_and_pkcs11_signers_are_interchangeable(token: SoftHSMToken, tmp_path):
    token.generate_key("anchor")
    generate_key_file(tmp_path / "k.pem")
    signers: list[Signer] = [load_signer(token.key_ref("anchor", pin_source=True)), load_signer(str(tmp_path / "k.pem")),
                             InMemorySigner(bytes(32))]
    for signer in signers:
        verify_everywhere(signer.public_key, MESSAGE, signer.sign(MESSAGE))
