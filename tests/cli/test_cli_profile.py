"""The profile commands driven in-process through ``plexus.cli.main``: validate, render, list, schema, init."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from support import EXAMPLES

from plexus.cli import main

PROBLEM_LINE = re.compile(r"^[^\n]+:\d+:\d+: \S.*$")


def test_validate_examples_exit_0(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, sorted(examples.glob("*.yaml")))]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "3 profiles, all valid" in err and "base" in err


def test_validate_reports_every_problem_one_line_each(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = examples / "laptop.yaml"
    text = path.read_text().replace("smtp: {host", "smpt: {host").replace("hops: 7", "hops: 100")
    path.write_text(text.replace("timeout: 30s", "timeout: soon"))
    assert main(["validate", str(path), str(examples / "home-server.yaml")]) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3 and all(PROBLEM_LINE.match(line) for line in lines), out
    assert any("did you mean 'smtp'?" in line for line in lines)
    assert "2 profiles, 1 invalid" in err


def test_validate_json(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = examples / "laptop.yaml"
    path.write_text(path.read_text().replace("role: initiate", "role: both"))
    assert main(["validate", "--json", str(path), "no-such-profile"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    first, second = result["profiles"]
    assert first["problems"][0]["field"] == "role" and first["problems"][0]["line"] == 9
    assert "not found" in second["error"]


def test_validate_warnings_keep_exit_0(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = examples / "laptop.yaml"
    path.write_text(path.read_text().replace("password: {env: PLEXUS_MAIL_PASSWORD}", "password: s3cret"))
    assert main(["validate", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert re.match(r"^.*laptop\.yaml:\d+:\d+: warning: rendezvous\.email\.password: ", out)
    assert "s3cret" not in out


def test_validate_default_uses_the_search_path(examples: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_PROFILE_PATH", str(examples))
    assert main(["validate"]) == 0
    assert "3 profiles, all valid" in capsys.readouterr().err
    monkeypatch.setenv("PLEXUS_PROFILE_PATH", str(examples / "certs"))
    assert main(["validate"]) == 2
    assert "no profiles found" in capsys.readouterr().err


def test_render_masks_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLES / "laptop.yaml"), "--peer", "198.18.0.2:40001"]) == 0
    out = capsys.readouterr().out
    assert "argv: openvpn --config" in out and "remote 198.18.0.2 40001" in out
    assert "ifconfig 198.19.0.1 198.19.0.2" in out
    assert "-----BEGIN PRIVATE KEY-----" not in out and "********" in out


def test_render_json_and_show_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["render", str(EXAMPLES / "home-server.yaml"), "--peer", "198.18.0.9:5000", "--peer-id", "phone",
            "--as-peer-values", "fingerprint=AA:BB", "--json", "--show-secrets"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["peer_id"] == "phone" and result["assumed"]["peer"] == "198.18.0.9:5000"
    assert result["assumed"]["peer_values"] == []
    config = result["files"]["openvpn.conf"]
    assert config["mode"] == "0600" and "PRIVATE KEY" in config["content"] and "AA:BB" in config["content"]
    assert not Path(config["path"]).exists()  # the temporary run directory is gone


def test_render_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLES / "laptop.yaml"), "--peer", "nowhere"]) == 2
    assert main(["render", str(EXAMPLES / "laptop.yaml"), "--peer", "1.2.3.4:5", "--peer-id", "x"]) == 2
    assert main(["render", str(EXAMPLES / "mailbox-base.yaml"), "--peer", "1.2.3.4:5"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("plexus: ") for line in err), err


def test_list(examples: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_PROFILE_PATH", str(examples))
    assert main(["list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["profiles"]}
    assert rows["home-server"]["role"] == "accept" and rows["home-server"]["peers"] == ["laptop", "phone"]
    assert rows["laptop"]["payload"] == "openvpn" and rows["mailbox-base"]["role"] == "base"
    assert main(["list"]) == 0
    assert "home-server" in capsys.readouterr().out


def test_schema_is_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False


def test_init_writes_a_profile_that_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["init", "box", "--dir", str(tmp_path), "--no-input", "--host-id", "box", "--peer-id", "hub",
            "--role", "accept", "--template", "wireguard", "--smtp", "mail.example.org:587", "--stun", "s:3478"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("still to create") == 3  # our certificate and key, the peer's certificate
    path = tmp_path / "box.yaml"
    text = path.read_text()
    assert "# yaml-language-server: $schema=" in text and "tls: starttls" in text
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("box", "hub"):
        shutil.copy(EXAMPLES / "certs" / "laptop.crt", certs / f"{name}.crt")
    shutil.copy(EXAMPLES / "certs" / "laptop.key", certs / "box.key")
    assert main(["validate", str(path)]) == 0
    assert main(args) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force", "--host-id", "box: two"]) == 2  # bad input: still one line per problem


def test_init_covers_each_builtin_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for template in ("openvpn", "wireguard", "socat", "exec"):
        assert main(["init", template, "--dir", str(tmp_path), "--no-input", "--template", template]) == 0
        assert "still to create" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_init_prompts_for_what_flags_do_not_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # answers in prompt order: host id, address, role, peer id, peer address, template, smtp, imap, login, stun
    answers = ["desk", "", "accept", "", "", "socat", "mail.example.net:587", "", "", "stun.example.net:3478"]
    monkeypatch.setattr("sys.stdin", _Terminal("\n".join(answers) + "\n"))
    assert main(["init", "desk", "--dir", str(tmp_path)]) == 0
    profile = yaml.safe_load((tmp_path / "desk.yaml").read_text())
    assert profile["host"] == {"id": "desk", "address": "desk@example.org"}
    assert profile["role"] == "accept" and profile["peers"][0]["id"] == "laptop"
    assert profile["payload"] == {"template": "socat", "vars": {"listen_port": 5000, "app_port": 5001},
                                  "restart": "on-failure"}
    assert profile["rendezvous"]["email"]["smtp"] == {"host": "mail.example.net", "port": 587, "tls": "starttls"}
    assert profile["stun"]["servers"] == ["stun.example.net:3478"]
