"""Rendering: sandbox, strict variables, private files, argv without a shell, key material, masking."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from plexus.errors import LaunchError
from plexus.launch.template import SessionContext, Template, check_vars, find_template, load_template, prepare, render

SECRET = bytes(range(32))


def context(role: str = "accept", peer_values: dict[str, str] | None = None, **vars: object) -> SessionContext:
    return SessionContext(
        inner=("0.0.0.0", 40000), outer=("198.18.11.2", 40001), peer=("198.18.12.2", 40002), secret=SECRET,
        host_id="alice", peer_id="bob", role=role, peer_values=peer_values or {}, vars=dict(vars),
    )


def make(root: Path, manifest: str, **sources: str) -> Template:
    directory = root / "tpl"
    directory.mkdir()
    (directory / "template.yaml").write_text(manifest)
    for name, text in sources.items():
        (directory / name.replace("_", ".")).write_text(text)
    return load_template(directory)


def run_dir(tmp_path: Path, name: str = "run") -> Path:
    path = tmp_path / name
    path.mkdir(mode=0o700)
    return path


def test_undefined_variable_names_variable_file_and_line(tmp_path: Path) -> None:
    template = make(tmp_path, "description: x\nargv: [true]\nfiles: [{name: c, source: c.j2}]\n",
                    c_j2="first {{ inner.ip }}\nsecond {{ vars.tunel }}\n")
    with pytest.raises(LaunchError) as caught:
        render(template, prepare(template), context(tunnel="198.19.0.1"), run_dir(tmp_path))
    assert str(caught.value) == f"{template.path / 'c.j2'}:2: vars.tunel is undefined"


def test_undefined_in_argv_names_the_element(tmp_path: Path) -> None:
    template = make(tmp_path, "description: x\nargv: [prog, '{{ peer.adress }}']\n")
    with pytest.raises(LaunchError, match=r"template.yaml: argv\[1\]: peer.adress is undefined"):
        render(template, prepare(template), context(), run_dir(tmp_path))


@pytest.mark.parametrize(
    "expression",
    ["{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ vars.update({'x': 1}) }}",
     "{{ secret.__len__() }}", "{{ cycler.__init__.__globals__ }}"],
)
def test_sandbox_blocks_attribute_abuse(tmp_path: Path, expression: str) -> None:
    template = make(tmp_path, "description: x\nargv: [prog]\nfiles: [{name: c, source: c.j2}]\n",
                    c_j2=expression + "\n")
    with pytest.raises(LaunchError) as caught:
        render(template, prepare(template), context(), run_dir(tmp_path))
    assert "unsafe" in str(caught.value) or "not safely callable" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    template = make(tmp_path, "description: x\nargv: [prog, '{{ files.c }}']\n"
                    "files: [{name: c, source: c.j2}, {name: s, source: s.j2, mode: '0700'}]\n",
                    c_j2="{{ secret }}\n", s_j2="#!/bin/sh\n")
    directory = tmp_path / "run"
    directory.mkdir(mode=0o755)
    old = os.umask(0)
    try:
        rendered = render(template, prepare(template), context(), directory)
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(rendered.files["c"].stat().st_mode) == 0o600
    assert stat.S_IMODE(rendered.files["s"].stat().st_mode) == 0o700
    assert rendered.argv == ["prog", str(directory / "c")]
    assert rendered.files["c"].read_text() == SECRET.hex() + "\n"


def test_argv_never_goes_through_a_shell(tmp_path: Path) -> None:
    show_argv = "import json, sys; print(json.dumps(sys.argv[1:]))"
    argv = f"['{{{{ python }}}}', -c, '{show_argv}', '{{{{ vars.word }}}}']"
    template = make(tmp_path, f"description: x\nneeds: [word]\nargv: {argv}\n")
    nasty = f"x; touch {tmp_path}/pwned $(touch {tmp_path}/pwned2) `id` | cat"
    rendered = render(template, prepare(template), context(word=nasty), run_dir(tmp_path))
    assert rendered.argv[-1] == nasty
    out = subprocess.run(rendered.argv, capture_output=True, text=True, check=True, timeout=10).stdout
    assert json.loads(out) == [nasty]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_exec_template_is_the_original_positional_call(tmp_path: Path) -> None:
    script = tmp_path / "payload.py"
    script.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    script.chmod(0o755)
    template = find_template("exec")
    assert check_vars(template, {}) == ["payload var 'command' is missing (exec needs command)"]
    rendered = render(template, prepare(template), context(command=str(script)), run_dir(tmp_path))
    out = subprocess.run(rendered.argv, capture_output=True, text=True, check=True, timeout=10).stdout
    secret_file = str(rendered.files["secret"])  # the secret itself is never on argv (/proc/PID/cmdline)
    assert json.loads(out) == ["0.0.0.0", "40000", "198.18.11.2", "40001", "198.18.12.2", "40002", secret_file]
    assert Path(secret_file).read_text() == SECRET.hex() + "\n"


def test_check_vars_lists_each_missing_var() -> None:
    openvpn = find_template("openvpn")
    assert check_vars(openvpn, {"tunnel": "198.19.0.1"}) == [
        "payload var 'remote_tunnel' is missing (openvpn needs tunnel, remote_tunnel)"]
    assert check_vars(openvpn, {"tunnel": "198.19.0.1", "remote_tunnel": "198.19.0.2"}) == []


def test_render_refuses_missing_vars_and_missing_peer_values(tmp_path: Path) -> None:
    openvpn = find_template("openvpn")
    prepared = prepare(openvpn)
    with pytest.raises(LaunchError, match="payload var 'remote_tunnel' is missing"):
        render(openvpn, prepared, context(tunnel="198.19.0.1"), run_dir(tmp_path, "r1"))
    with pytest.raises(LaunchError, match="the peer sent no 'fingerprint' value"):
        render(openvpn, prepared, context(tunnel="198.19.0.1", remote_tunnel="198.19.0.2"), run_dir(tmp_path, "r2"))


@pytest.mark.parametrize("value", ["AA:BB\nscript-security 2\nup /bin/sh", "x y", "", "a" * 2000, "$(id)"])
def test_peer_values_cannot_inject_config(tmp_path: Path, value: str) -> None:
    openvpn = find_template("openvpn")
    ctx = context(peer_values={"fingerprint": value}, tunnel="198.19.0.1", remote_tunnel="198.19.0.2")
    with pytest.raises(LaunchError, match="not a single safe token"):
        render(openvpn, prepare(openvpn), ctx, run_dir(tmp_path))


def test_wireguard_keys_are_a_real_pair_and_only_the_public_one_is_exported() -> None:
    prepared = prepare(find_template("wireguard"))
    private = base64.b64decode(prepared.keys["wg"]["private"])
    public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    assert prepared.exports == {"public_key": base64.b64encode(public).decode()}
    assert prepared.secrets == [prepared.keys["wg"]["private"]]


def test_tls_cert_fingerprint_matches_the_certificate() -> None:
    prepared = prepare(find_template("openvpn"))
    cert = x509.load_pem_x509_certificate(prepared.keys["tls"]["cert"].encode())
    assert prepared.exports["fingerprint"] == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert prepared.secrets == [prepared.keys["tls"]["key"]]
    assert prepare(find_template("openvpn")).exports != prepared.exports  # fresh per session


def test_render_is_deterministic_given_prepared_keys(tmp_path: Path) -> None:
    openvpn = find_template("openvpn")
    prepared = prepare(openvpn)
    ctx = context(peer_values=prepare(openvpn).exports, tunnel="198.19.0.1", remote_tunnel="198.19.0.2")
    first = render(openvpn, prepared, ctx, run_dir(tmp_path, "one"))
    second = render(openvpn, prepared, ctx, run_dir(tmp_path, "two"))
    assert first.files["openvpn.conf"].read_text() == second.files["openvpn.conf"].read_text()
    assert [a.replace("/one/", "/two/") for a in first.argv] == second.argv


def test_openvpn_config_by_role(tmp_path: Path) -> None:
    openvpn = find_template("openvpn")
    peer = prepare(openvpn).exports
    vars = {"tunnel": "198.19.0.1/30", "remote_tunnel": "198.19.0.2"}
    accept = render(openvpn, prepare(openvpn), context("accept", peer, **vars), run_dir(tmp_path, "a"))
    text = accept.files["openvpn.conf"].read_text()
    lines = text.splitlines()
    assert {"tls-server", "dh none", "lport 40000", "remote 198.18.12.2 40002",
            "ifconfig 198.19.0.1 198.19.0.2", peer["fingerprint"]} <= set(lines)
    assert not any(line.startswith("local ") for line in lines)  # 0.0.0.0: bind all
    assert "" not in lines[:lines.index("<peer-fingerprint>")]  # no blank lines left by {% if %}
    initiate = render(openvpn, prepare(openvpn), context("initiate", peer, **vars), run_dir(tmp_path, "i"))
    lines = initiate.files["openvpn.conf"].read_text().splitlines()
    assert "tls-client" in lines and "dh none" not in lines and "tls-server" not in lines


def test_payload_key_is_hkdf_of_the_secret_and_secrets_are_masked(tmp_path: Path) -> None:
    template = make(tmp_path, "description: x\nargv: [prog, '{{ payload_key }}', '{{ secret }}', "
                    "'{{ payload_key | hex_b64 }}']\n")
    rendered = render(template, prepare(template), context(), run_dir(tmp_path))
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"plexus payload key").derive(SECRET)
    assert rendered.argv[1] == expected.hex() and rendered.argv[1] != SECRET.hex()
    assert rendered.mask(" ".join(rendered.argv)) == "prog ******** ******** ********"


def test_wireguard_config_masks_private_and_preshared_keys(tmp_path: Path) -> None:
    wireguard = find_template("wireguard")
    prepared = prepare(wireguard)
    peer = prepare(wireguard).exports
    ctx = context("initiate", peer, tunnel="198.19.0.2", remote_tunnel="198.19.0.1", preshared_key=True)
    rendered = render(wireguard, prepared, ctx, run_dir(tmp_path))
    text = rendered.files["wg.conf"].read_text()
    assert f"PrivateKey = {prepared.keys['wg']['private']}" in text
    assert f"PublicKey = {peer['public_key']}" in text and "AllowedIPs = 198.19.0.1/32" in text
    masked = rendered.mask(text)
    assert prepared.keys["wg"]["private"] not in masked and "PresharedKey = ********" in masked
    assert "--address" in rendered.argv and "198.19.0.2" in rendered.argv
