"""The DHT rendezvous without a network: keys, identities, `plexus keygen`, the carrier's value filter, and the
profile errors."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import REPO
from support.dht import identity, profile

from plexus.errors import ProfileError
from plexus.profile.model import Authentication, Endpoint
from plexus.rendezvous import smime
from plexus.rendezvous.auth import MAX_DOCUMENT_BYTES
from plexus.rendezvous.dht import DhtCarrier, open_dht_exchange, value_id, value_time
from plexus.rendezvous.dht.identity import IdentityFiles, generate, identity_files, key_text, load_own
from plexus.rendezvous.dht.node import VALUE_TYPE, Received

BOOTSTRAP = [Endpoint("127.0.0.1", 4222)]

NOW = time.time()


def test_key_is_fingerprint_and_app_and_differs_per_peer_and_app(tmp_path: Path) -> None:
    alice = smime.load_certificate(identity(tmp_path, "alice").certificate)
    bob = smime.load_certificate(identity(tmp_path, "bob").certificate)
    assert key_text(alice, "plexus") == smime.fingerprint(alice).hex() + "plexus"
    assert key_text(alice, "plexus") != key_text(bob, "plexus")
    assert key_text(alice, "plexus") != key_text(alice, "other-app")


def test_generated_identity_is_a_private_rsa_smime_pair(tmp_path: Path) -> None:
    files = IdentityFiles(tmp_path / "keys" / "identity.crt", tmp_path / "keys" / "identity.key")
    certificate = generate(files, "alice", "alice@example.org")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in usage
    loaded = smime.load_identity(files.certificate, files.key)  # the key belongs to the certificate
    assert isinstance(loaded.key, rsa.RSAPrivateKey) and loaded.key.key_size >= 3072
    assert smime.names(certificate) == {"alice", "alice@example.org"}


def test_identity_comes_from_smime_files_else_from_the_key_directory(tmp_path: Path) -> None:
    with_smime = profile(tmp_path, "alice", ["bob"], BOOTSTRAP)
    assert identity_files(with_smime).certificate == with_smime.rendezvous.authentication.certificate
    keys_only = profile(tmp_path, "alice", ["bob"], BOOTSTRAP, keys_only=True)
    assert identity_files(keys_only) == IdentityFiles(tmp_path / "alice" / "identity.crt",
                                                      tmp_path / "alice" / "identity.key")
    nowhere = replace(keys_only, rendezvous=replace(keys_only.rendezvous, dht=replace(
        keys_only.rendezvous.dht, keys=None)))  # type: ignore[type-var]
    with pytest.raises(ProfileError, match="no place for our DHT identity"):
        identity_files(nowhere)


def test_missing_identity_says_run_keygen(tmp_path: Path) -> None:
    alice = profile(tmp_path, "alice", ["bob"], BOOTSTRAP, keys_only=True)
    files = identity_files(alice)
    files.certificate.unlink()
    files.key.unlink()
    with pytest.raises(ProfileError, match="does not exist yet") as caught:
        load_own(alice)
    assert "plexus keygen" in (caught.value.hint or "")


def test_dht_needs_smime_and_pinned_peer_certificates(tmp_path: Path) -> None:
    alice = profile(tmp_path, "alice", ["bob"], BOOTSTRAP)
    psk = replace(alice, rendezvous=replace(alice.rendezvous, authentication=Authentication("psk")))
    with pytest.raises(ProfileError, match="needs authentication: smime, not psk"):
        open_dht_exchange(psk)
    unpinned = replace(alice, peers=(replace(alice.peers[0], certificate=None),))
    with pytest.raises(ProfileError, match="'bob' has no certificate"):
        open_dht_exchange(unpinned)


def carrier_with(tmp_path: Path, values: list[Received]) -> list[bytes]:
    """What ``documents()`` yields for ``values`` (fed as the node would, without a node)."""
    import asyncio

    carrier = DhtCarrier(profile(tmp_path, "bob", ["alice"], BOOTSTRAP))
    carrier.listening_since = NOW

    async def collect() -> list[bytes]:
        for value in values:
            carrier._deliver(value)
        out: list[bytes] = []
        stream = carrier.documents()
        try:
            while True:
                out.append((await asyncio.wait_for(anext(stream), 0.2)).data)
        except TimeoutError:
            return out

    return asyncio.run(collect())


def test_carrier_drops_foreign_and_oversize_values_and_skips_redelivery(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    ids = [value_id(NOW + 0.1 * n) for n in range(6)]
    values = [
        Received(b"first", ids[0], VALUE_TYPE),
        Received(b"first", ids[0], VALUE_TYPE),  # the DHT announcing the same value again: skipped silently
        Received(b"first", ids[1], VALUE_TYPE),  # the same bytes as a new value: passed on (a replay, for the exchange)
        Received(b"not ours", ids[2], "text/plain"),
        Received(b"x" * (MAX_DOCUMENT_BYTES + 1), ids[3], VALUE_TYPE),
        Received(b"an earlier session's", value_id(NOW - 60), VALUE_TYPE),
        Received(b"put just before we listened", value_id(NOW - 3), VALUE_TYPE),
        Received(b"second", ids[5], VALUE_TYPE),
    ]
    assert carrier_with(tmp_path, values) == [b"first", b"first", b"put just before we listened", b"second"]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert f"dht value {ids[2]:016x}: foreign value (type 'text/plain'" in lines[0]
    assert f"dht value {ids[3]:016x}" in lines[1] and f"more than {MAX_DOCUMENT_BYTES}" in lines[1]
    assert "put 60 s before we started listening" in lines[2]


def test_value_ids_tell_when_they_were_put() -> None:
    now = time.time()
    first, second = value_id(now), value_id(now)
    assert first != second and 0 < first < 2**63
    assert abs(value_time(first) - now) < 0.001


PROFILE_YAML = """\
version: 1
host: {{id: alice}}
role: initiate
peers:
  - {{id: bob, certificate: {peer}}}
rendezvous:
  authentication: smime
  smime: {{certificate: keys/identity.crt, key: keys/identity.key}}
  dht: {{bootstrap: ["198.18.0.10:4222"], keys: keys}}
stun: {{servers: ["198.18.0.10:3478"]}}
payload: {{template: socat, vars: {{app_port: 8000, listen_port: 9000}}}}
"""


def keygen(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "plexus", "keygen", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def test_keygen_creates_the_identity_once_and_force_replaces_it(tmp_path: Path) -> None:
    peer = identity(tmp_path, "bob").certificate
    path = tmp_path / "alice.yaml"
    path.write_text(PROFILE_YAML.format(peer=peer))
    made = keygen(str(path))
    assert made.returncode == 0, made.stdout + made.stderr
    certificate = smime.load_certificate(tmp_path / "keys" / "identity.crt")
    fingerprint = smime.fingerprint(certificate).hex()
    assert fingerprint in made.stdout and "peers[].certificate" in made.stdout
    assert stat.S_IMODE((tmp_path / "keys" / "identity.key").stat().st_mode) == 0o600

    again = keygen(str(path))
    assert again.returncode == 0 and "exists already" in again.stdout
    assert smime.fingerprint(smime.load_certificate(tmp_path / "keys" / "identity.crt")).hex() == fingerprint

    forced = keygen("--force", str(path))
    assert forced.returncode == 0, forced.stderr
    assert smime.fingerprint(smime.load_certificate(tmp_path / "keys" / "identity.crt")).hex() != fingerprint


def test_keygen_refuses_half_an_identity_and_bad_profiles_in_one_line(tmp_path: Path) -> None:
    peer = identity(tmp_path, "bob").certificate
    path = tmp_path / "alice.yaml"
    path.write_text(PROFILE_YAML.format(peer=peer))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "identity.key").write_text("stray")
    half = keygen(str(path))
    assert half.returncode != 0 and "Traceback" not in half.stderr
    assert "--force" in half.stdout + half.stderr
    path.write_text(PROFILE_YAML.format(peer=tmp_path / "missing.crt"))
    broken = keygen(str(path))
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert "missing.crt" in broken.stdout + broken.stderr
