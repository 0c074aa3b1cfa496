"""The profile loader and validator: each mistake gives one line naming the right file, line and field."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from support import EXAMPLES
from support.profiles import edit, errors, line_of, only_error

from plexus.errors import ProfileError
from plexus.profile import find_profiles, load, validate
from plexus.profile.durations import parse_duration
from plexus.profile.model import Endpoint, SecretRef


def test_examples_are_valid_and_load() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert errors(path) == [], path
    laptop = load(EXAMPLES / "laptop.yaml")
    assert laptop.name == "laptop" and laptop.role == "initiate"
    assert laptop.peers[0].certificate == (EXAMPLES / "certs" / "home.crt").resolve()
    assert laptop.rendezvous.timeout == 60.0 and laptop.rendezvous.max_age == 120.0
    assert laptop.rendezvous.email is not None
    assert laptop.rendezvous.email.password == SecretRef("env", "PLEXUS_MAIL_PASSWORD")
    assert laptop.stun.servers == (Endpoint("stun.example.org", 3478),)
    assert laptop.punch.hops == 7 and laptop.punch.timeout == 30.0
    assert laptop.payload_vars(laptop.peers[0]) == {"tunnel": "198.19.0.1", "remote_tunnel": "198.19.0.2"}


def test_extends_merges_and_points_into_the_base(examples: Path) -> None:
    home = load(examples / "home-server.yaml")
    assert home.rendezvous.authentication.key == (examples / "certs" / "home.key").resolve()
    assert home.stun.servers[1] == Endpoint("stun2.example.org", 3478)  # from the base
    assert home.payload.restart == "always"  # from the profile
    base = examples / "mailbox-base.yaml"
    edit(base, "port: 465", "port: smtp")
    problem = only_error(examples / "home-server.yaml")
    assert problem.file == base and problem.line == line_of(base, "port: smtp")
    assert problem.field == "rendezvous.email.smtp.port"
    assert str(problem).startswith(f"{base}:{problem.line}:")


def test_extends_cycle_and_missing_base(examples: Path) -> None:
    edit(examples / "mailbox-base.yaml", "version: 1", "version: 1\nextends: home-server.yaml")
    problem = only_error(examples / "home-server.yaml")
    assert "extends cycle" in problem.message and problem.field == "extends"
    assert problem.file == examples / "mailbox-base.yaml"
    edit(examples / "home-server.yaml", "extends: mailbox-base.yaml", "extends: nowhere.yaml")
    problems = errors(examples / "home-server.yaml")
    assert any("nowhere.yaml does not exist" in p.message and p.line == 4 for p in problems)


def test_a_base_alone_is_checked_but_need_not_be_complete(examples: Path) -> None:
    assert errors(examples / "mailbox-base.yaml") == []
    with pytest.raises(ProfileError, match="missing"):
        load(examples / "mailbox-base.yaml")  # but it cannot be used on its own
    edit(examples / "mailbox-base.yaml", "servers:", "server:")
    problem = only_error(examples / "mailbox-base.yaml")
    assert problem.message == "unknown key 'server'" and problem.hint == "did you mean 'servers'?"


def test_misspelt_key_says_did_you_mean(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "smtp: {host", "smpt: {host")
    problem = only_error(path)
    assert (problem.line, problem.col) == (line_of(path, "smpt:"), 5)
    assert problem.field == "rendezvous.email.smpt"
    assert str(problem).endswith("unknown key 'smpt' (did you mean 'smtp'?)")


def test_wrong_type(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "hops: 7", "hops: seven")
    problem = only_error(path)
    assert problem.field == "punch.hops" and problem.line == line_of(path, "hops: seven")
    assert "must be a whole number" in problem.message


def test_hops_range(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "hops: 7", "hops: 65")
    assert "at most 64" in only_error(path).message


def test_bad_duration(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "timeout: 30s", "timeout: 30 seconds")
    problem = only_error(path)
    assert problem.field == "punch.timeout" and "duration like 500ms" in problem.message


def test_missing_file(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "certificate: certs/home.crt", "certificate: certs/nope.crt")
    problem = only_error(path)
    assert problem.field == "peers[0].certificate" and "does not exist" in problem.message
    assert problem.line == line_of(path, "certs/nope.crt")


def test_missing_template_variable_with_hint(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "vars: {tunnel: 198.19.0.1}", "vars: {tunel: 198.19.0.1}")
    problem = only_error(path)
    assert problem.field == "payload.vars.tunnel" and "needs variable 'tunnel'" in problem.message
    assert problem.hint is not None and "did you mean 'tunnel'" in problem.hint


def test_missing_per_peer_variable(examples: Path) -> None:
    path = edit(examples / "home-server.yaml", "vars: {remote_tunnel: 198.19.0.3}", "vars: {}")
    problem = only_error(path)
    assert problem.field == "peers[1].vars.remote_tunnel" and "peer phone" in problem.message


def test_unknown_template(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "template: openvpn", "template: openvpm")
    problem = only_error(path)
    assert problem.field == "payload.template" and "not found" in problem.message


def test_duplicate_peer_ids_and_own_id(examples: Path) -> None:
    path = edit(examples / "home-server.yaml", "id: phone", "id: laptop")
    problem = only_error(path)
    assert problem.field == "peers[1].id" and "duplicate peer id 'laptop'" in problem.message
    path = edit(path, "id: laptop", "id: home-server")
    assert any("our own host.id" in p.message for p in errors(path))


def test_duplicate_yaml_key(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "role: initiate", "role: initiate\nrole: accept")
    problem = only_error(path)
    assert "duplicate key 'role'" in problem.message and problem.line == line_of(path, "role: accept")


def _certificate(path: Path, *, days: int, key: object | None = None) -> object:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=30), now + datetime.timedelta(days=days)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)  # type: ignore[attr-defined]
                   .not_valid_before(start).not_valid_after(end).sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key


def test_expired_certificate(examples: Path) -> None:
    _certificate(examples / "certs" / "home.crt", days=-1)
    problem = only_error(examples / "laptop.yaml")
    assert problem.field == "peers[0].certificate" and "expired on" in problem.message


def test_key_must_match_certificate(examples: Path) -> None:
    shutil.copy(examples / "certs" / "phone.key", examples / "certs" / "laptop.key")
    problem = only_error(examples / "laptop.yaml")
    assert problem.field == "rendezvous.smime.key" and "is not the key of" in problem.message


def test_not_a_certificate_and_ec_peer(examples: Path) -> None:
    (examples / "certs" / "home.crt").write_text("hello\n")
    assert "is not a certificate" in only_error(examples / "laptop.yaml").message
    _certificate(examples / "certs" / "home.crt", days=365, key=ec.generate_private_key(ec.SECP256R1()))
    assert "RSA" in only_error(examples / "laptop.yaml").message


def test_authentication_requirements_and_warnings(examples: Path) -> None:
    path = examples / "laptop.yaml"
    edit(path, "authentication: smime", "authentication: psk")
    problem = only_error(path)
    assert problem.field == "rendezvous.psk" and "pre-shared key" in problem.message
    edit(path, "authentication: psk", "authentication: psk\n  psk: hunter2")
    found = validate(path)
    assert not any(p.is_error for p in found)
    assert [p.field for p in found if p.severity == "warning"] == ["rendezvous.psk"]
    assert "hunter2" not in " ".join(map(str, found))
    assert load(path).warnings and "inline" in load(path).warnings[0]
    edit(path, "authentication: psk", "authentication: none")
    assert any(p.field == "rendezvous.authentication" and p.severity == "warning" for p in validate(path))


def test_smime_needs_a_certificate_per_peer(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "    certificate: certs/home.crt", "")
    problem = only_error(path)
    assert problem.field == "peers[0].certificate" and "missing" in problem.message


def test_email_needs_addresses(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "  address: laptop@example.org", "")
    problem = only_error(path)
    assert problem.field == "host.address"


def test_secrets_and_durations_convert(examples: Path) -> None:
    path = examples / "laptop.yaml"
    (examples / "mail.secret").write_text("pw\n")
    (examples / "mail.secret").chmod(0o600)
    edit(path, "password: {env: PLEXUS_MAIL_PASSWORD}", "password: {file: mail.secret}")
    edit(path, "timeout: 30s", "timeout: 1.5")
    profile = load(path)
    assert profile.rendezvous.email is not None
    assert profile.rendezvous.email.password == SecretRef("file", str((examples / "mail.secret").resolve()))
    assert profile.rendezvous.email.password.resolve() == "pw"
    assert profile.punch.timeout == 1.5
    edit(path, "password: {file: mail.secret}", "password: {command: [echo, hi]}")
    assert load(path).rendezvous.email.password == SecretRef("command", ("echo", "hi"))  # type: ignore[union-attr]
    edit(path, "password: {command: [echo, hi]}", "password: {file: gone.secret}")
    assert "does not exist" in only_error(path).message


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h", 3600), (7, 7),
                                               ("1.5s", 1.5)])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1d", "-1s", "s", "", "1 5s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("content", "expect"), [
    (b"", "the profile is empty"),
    (b"- a\n- b\n", "top level must be a mapping"),
    (b"host:\n\tid: x\n", "tab character"),
    (b"host: \xff\n", "not UTF-8"),
    (b"a: &x [1]\nb: *x\n", "aliases"),
    (b"a: !!python/object:os.system x\n", "unsupported YAML tag"),
    (b"a: [1\n", "YAML syntax"),
])
def test_bad_yaml_is_one_line(tmp_path: Path, content: bytes, expect: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    problems = validate(path)
    assert len(problems) == 1 and expect in str(problems[0]), problems
    assert str(problems[0]).startswith(f"{path}:")
    with pytest.raises(ProfileError, match=expect):
        load(path)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for directory in (first, second):
        directory.mkdir()
        shutil.copy(EXAMPLES / "laptop.yaml", directory / "laptop.yaml")
        shutil.copytree(EXAMPLES / "certs", directory / "certs")
    shutil.copy(EXAMPLES / "laptop.yaml", second / "extra.yml")
    monkeypatch.setenv("PLEXUS_PROFILE_PATH", f"{first}:{second}")
    assert load("laptop").path == (first / "laptop.yaml").resolve()
    assert load("extra").path == (second / "extra.yml").resolve()
    assert find_profiles() == [first / "laptop.yaml", second / "extra.yml", second / "laptop.yaml"]
    with pytest.raises(ProfileError, match="not found"):
        load("nobody")
    monkeypatch.delenv("PLEXUS_PROFILE_PATH")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "xdg" / "plexus").mkdir(parents=True)
    (second).rename(tmp_path / "xdg" / "plexus" / "profiles")
    assert load("extra").path == (tmp_path / "xdg" / "plexus" / "profiles" / "extra.yml").resolve()


def test_load_error_counts_the_rest(examples: Path) -> None:
    path = edit(examples / "laptop.yaml", "hops: 7", "hops: 0")
    edit(path, "role: initiate", "role: sideways")
    with pytest.raises(ProfileError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and "and 1 more" in message and message.startswith(str(path))
