"""Forward specs (-L, -R, -D, expose targets) and certificate fingerprints."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from plexus.forward import Identity, LocalForward, RemoteForward, Socks, Target, check_fingerprint, fingerprint


@pytest.mark.parametrize(("text", "bind", "target"), [
    ("8080:db:5432", Target("127.0.0.1", 8080), Target("db", 5432)),
    ("0.0.0.0:8080:db:5432", Target("0.0.0.0", 8080), Target("db", 5432)),
    ("[::1]:0:[2001:db8::5]:22", Target("::1", 0), Target("2001:db8::5", 22)),
    ("localhost:65535:198.18.0.7:1", Target("localhost", 65535), Target("198.18.0.7", 1)),
])
def test_local_and_remote_forwards(text: str, bind: Target, target: Target) -> None:
    assert LocalForward.parse(text) == LocalForward(bind, target)
    assert RemoteForward.parse(text) == RemoteForward(bind, target)
    assert str(LocalForward.parse(text)) == f"-L {bind}:{target}"


@pytest.mark.parametrize(("text", "bind"), [
    ("1080", Target("127.0.0.1", 1080)),
    ("0.0.0.0:1080", Target("0.0.0.0", 1080)),
    ("[::]:1080", Target("::", 1080)),
])
def test_socks(text: str, bind: Target) -> None:
    assert Socks.parse(text) == Socks(bind)


@pytest.mark.parametrize(("text", "error"), [
    ("8080:db", "expected port:host:hostport or bind_host:port:host:hostport"),
    ("a:b:8080:db:5432", "expected port:host:hostport"),
    ("70000:db:5432", "port '70000' must be a number 0..65535"),
    ("8080:db:0", "port '0' must be a number 1..65535"),
    ("8080:db:ssh", "port 'ssh' must be a number"),
    (":8080:db:5432", "the host must be non-empty"),
    ("8080::5432", "IPv6 addresses go in brackets"),
    ("::1:8080:db:5432", "IPv6 addresses go in brackets"),
    ("8080:fe80::1:22", "IPv6 addresses go in brackets"),
    ("[127.0.0.1]:8080:db:22", "brackets are for IPv6 addresses only"),
    ("[::1:8080:db:22", "IPv6 addresses go in brackets"),
    ("8080:db]:22", "expected port:host:hostport"),
    ("[a]b:1:c:2", "unbalanced brackets"),
    ("8080:d b:22", "without spaces"),
])
def test_bad_forwards_say_why_in_one_line(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(")) as failure:
        LocalForward.parse(text)
    assert repr(text) in str(failure.value) and "\n" not in str(failure.value)


@pytest.mark.parametrize("text", ["", "db", "db:5432:1", "-1", "[::1]", ":22"])
def test_bad_targets_and_socks(text: str) -> None:
    with pytest.raises(ValueError):
        Target.parse(text)
    with pytest.raises(ValueError):
        Socks.parse(text + ":x")


def test_targets_compare_by_name_case_insensitively_not_by_resolution() -> None:
    assert Target.parse("DB.internal:5432").key() == Target.parse("db.internal:5432").key()
    assert Target.parse("localhost:22").key() != Target.parse("127.0.0.1:22").key()
    assert str(Target.parse("[::1]:22")) == "[::1]:22"


def test_fingerprints_are_sha256_of_the_der() -> None:
    identity = Identity.generate()
    der = identity.certificate.public_bytes(serialization.Encoding.DER)
    assert fingerprint(identity.certificate) == identity.fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    assert identity.fingerprint != Identity.generate().fingerprint
    assert check_fingerprint(identity.fingerprint.upper().replace("SHA256", "sha256")) == identity.fingerprint
    for bad in ("sha1:abcd", "sha256:" + "0" * 63, identity.fingerprint[7:]):
        with pytest.raises(ValueError, match="is not a certificate fingerprint"):
            check_fingerprint(bad)
