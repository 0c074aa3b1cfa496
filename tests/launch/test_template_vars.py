"""Payload vars cannot inject: each is checked for the kind its template declares (any other for control
characters) by ``plexus validate``, at the line where it is written, and again by ``render``."""

from __future__ import annotations

import json
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from plexus.cli import main
from plexus.errors import LaunchError
from plexus.launch.manifest import address
from plexus.launch.template import SessionContext, check_vars, find_template, load_template, prepare, render
from plexus.profile import validate

SECRET = bytes(range(32))
INJECT = "1400\nscript-security 2\nup /tmp/pwned.sh"
GOOD_VARS: dict[str, dict[str, Any]] = {  # payload.vars that validate, per built-in template
    "openvpn": {"tunnel": "198.19.0.1"},
    "wireguard": {"tunnel": "198.19.0.1"},
    "socat": {"listen_port": 5000, "app_port": 5001},
    "exec": {"command": "/usr/local/bin/on-connect"},
}
PEER_VARS = {"openvpn": {"remote_tunnel": "198.19.0.2"}, "wireguard": {"remote_tunnel": "198.19.0.2"}}
HOSTILE = [  # template, var, value
    ("openvpn", "mtu", INJECT),
    ("openvpn", "verb", "3\nscript-security 2\nup /tmp/pwned.sh"),
    ("openvpn", "ping_exit", "30\nup /tmp/pwned.sh"),
    ("openvpn", "tunnel", "not-an-address"),
    ("openvpn", "tunnel", "198.19.0.1 198.19.0.9\nup /tmp/pwned.sh"),
    ("wireguard", "keepalive", "5\nPostUp = /tmp/pwned.sh"),
    ("wireguard", "mtu", "1420\n[Peer]"),
    ("wireguard", "tunnel", "wg.example.org"),
    ("wireguard", "preshared_key", "false"),  # a text, which Jinja would take as true
    ("socat", "app_host", "127.0.0.1\nEXEC:/tmp/pwned.sh"),
    ("socat", "app_host", "127.0.0.1:9,fork!!EXEC:/tmp/pwned.sh"),  # socat's own option syntax
    ("socat", "listen_port", "5000\nEXEC:/tmp/pwned.sh"),
    ("socat", "listen_port", "5000,fork"),
    ("socat", "app_port", 70000),
    ("exec", "command", "/usr/local/bin/on-connect\n--evil"),
]


def profile(directory: Path, template: str, vars: dict[str, Any], peer_vars: dict[str, Any] | None = None) -> Path:
    """laptop.yaml of the examples with this payload; the var under test on a line of its own."""
    path = directory / "laptop.yaml"
    data = yaml.safe_load(path.read_text())
    data["payload"] = {"template": template, "vars": vars}
    data["peers"][0]["vars"] = peer_vars if peer_vars is not None else PEER_VARS.get(template, {})
    path.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False, width=1000))
    return path


def line_of(path: Path, key: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if re.match(rf"^\s*{key}:", line))


def context(**vars: Any) -> SessionContext:
    return SessionContext(inner=("0.0.0.0", 40000), outer=("198.18.11.2", 40001), peer=("198.18.12.2", 40002),
                          secret=SECRET, host_id="alice", peer_id="bob", role="initiate", peer_values={},
                          vars=dict(vars))


def full_vars(template: str, **override: Any) -> dict[str, Any]:
    return {**GOOD_VARS[template], **PEER_VARS.get(template, {}), **override}


@pytest.mark.parametrize(("template", "var", "value"), HOSTILE)
def test_validate_names_file_and_line_of_a_hostile_var(examples: Path, capsys: pytest.CaptureFixture[str],
                                                       template: str, var: str, value: Any) -> None:
    path = profile(examples, template, {**GOOD_VARS[template], var: value})
    problems = [p for p in validate(path) if p.is_error]
    assert [(p.file, p.line, p.field) for p in problems] == [(path, line_of(path, var), f"payload.vars.{var}")]
    assert "must be" in problems[0].message and f"declares {var} as" in (problems[0].hint or "")
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and re.match(rf"^{re.escape(str(path))}:{line_of(path, var)}:\d+: payload\.vars\.{var}: ",
                                      out[0]), out
    assert main(["render", str(path), "--peer", "198.18.0.2:40001"]) == 2  # nothing rendered


@pytest.mark.parametrize(("template", "var", "value"), HOSTILE)
def test_render_refuses_a_hostile_var(tmp_path: Path, template: str, var: str, value: Any) -> None:
    loaded = find_template(template)
    peer_values = prepare(loaded).exports
    ctx = replace(context(**full_vars(template, **{var: value})), peer_values=peer_values)
    run = tmp_path / "run"
    with pytest.raises(LaunchError) as caught:
        render(loaded, prepare(loaded), ctx, run)
    message = str(caught.value)
    assert message.startswith(f"payload var '{var}' must be ") and "\n" not in message
    assert not run.exists()  # refused before a file was written


def test_a_var_from_an_extends_base_is_reported_in_the_base(examples: Path) -> None:
    base = examples / "mailbox-base.yaml"
    base.write_text(base.read_text() + f"payload:\n  vars:\n    mtu: {json.dumps(INJECT)}\n")
    home = examples / "home-server.yaml"
    problems = [p for p in validate(home) if p.is_error]
    assert [(p.file, p.line, p.field) for p in problems] == [(base, line_of(base, "mtu"), "payload.vars.mtu")]
    # the base alone: no template there, so checked as text
    alone = [p for p in validate(base) if p.is_error]
    assert [(p.file, p.line) for p in alone] == [(base, line_of(base, "mtu"))]
    assert "control character '\\n'" in alone[0].message


def test_a_peer_var_is_reported_at_the_peer(examples: Path) -> None:
    path = profile(examples, "openvpn", GOOD_VARS["openvpn"], {"remote_tunnel": "198.19.0.2\nup /tmp/pwned.sh"})
    problems = [p for p in validate(path) if p.is_error]
    assert [(p.line, p.field) for p in problems] == [(line_of(path, "remote_tunnel"), "peers[0].vars.remote_tunnel")]


def test_undeclared_vars_are_checked_for_control_characters_everywhere(examples: Path, tmp_path: Path) -> None:
    vars = {**GOOD_VARS["openvpn"], "extra": ["fine", "two\nlines"], "nested": {"k": "tab\there"}}
    path = profile(examples, "openvpn", vars)
    problems = sorted((p.field, p.line) for p in validate(path) if p.is_error)
    assert [field for field, _ in problems] == ["payload.vars.extra[1]", "payload.vars.nested.k"]
    assert problems[1][1] == line_of(path, "k")
    # a user template without any `vars:` declaration still gets the rule, at render time too
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "template.yaml").write_text("description: x\nargv: [prog, '{{ vars.word }}']\n")
    (directory / "c.j2").write_text("{{ vars.word }}\n")
    mine = load_template(directory)
    assert check_vars(mine, {"word": "a b c"}) == []
    assert check_vars(mine, {"word": "a\rb"}) == [
        "payload var 'word' contains the control character '\\r' (a payload var must be text without control "
        "characters: a newline could inject config lines)"]
    for hostile in ("x\ny", "x\x1b[2Jy", "x\u2028y", "x\u202ey", ["ok", {"k\n": 1}]):
        with pytest.raises(LaunchError, match="control character"):
            render(mine, prepare(mine), context(word=hostile), tmp_path / "run")


def test_kinds_accept_the_usual_spellings_and_nothing_else() -> None:
    from plexus.launch.varkinds import KINDS, kind_problem

    good = {"address": ["198.19.0.1", "198.19.0.1/30", "fd00::1/64", "::1"], "port": [1, "5000", 65535],
            "integer": [1400, "1400", 0, "-1"], "boolean": [True, False], "token": ["AA:BB", "a+b/c=", 42],
            "path": ["/usr/bin/x", "relative/tool", "/opt/my tool"], "text": ["any text, even spaces", ""],
            "list": [[], ["127.0.0.1:22", "2222:127.0.0.1:22"], [1080]]}
    bad = {"address": ["host.example.org", "198.19.0.1/33", "198.19.0.1/255.255.255.0", "fe80::1%eth0", " ::1",
                       1, None], "port": [0, 65536, "80x", True, 1.0, "1e3"],
           "integer": ["1.5", 1.5, True, "", "1 2", ["1"]], "boolean": ["true", 1, "yes"],
           "token": ["a b", "", "a\n", "x" * 1025, "$(id)"], "path": ["-rf", "", "a\nb", {"a": 1}],
           "text": ["a\nb", "a\tb", "\x00", "x" * 4097, ["a"]],
           "list": ["127.0.0.1:22", ["a\nb"], [True], [["nested"]], ["x"] * 257, {"a": 1}]}
    assert set(good) == set(bad) == set(KINDS)
    for kind, values in good.items():
        assert [kind_problem(kind, v) for v in values] == [None] * len(values), kind
    for kind, values in bad.items():
        for value in values:
            problem = kind_problem(kind, value)
            assert problem and problem.startswith(f"must be {KINDS[kind]}; got ") and "\n" not in problem, value


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_undeclared_rule_never_crashes_and_lets_no_newline_through(value: Any) -> None:
    from plexus.launch.varkinds import var_problems

    if not var_problems({}, {"v": value}):
        assert not _has_newline(value)


def _has_newline(value: Any) -> bool:
    if isinstance(value, str):
        return "\n" in value or "\r" in value
    if isinstance(value, list):
        return any(map(_has_newline, value))
    if isinstance(value, dict):
        return any(_has_newline(k) or _has_newline(v) for k, v in value.items())
    return False


def test_address_filter_refuses_what_is_not_an_address(tmp_path: Path) -> None:
    assert address("198.19.0.1/30") == "198.19.0.1" and address("fd00::2") == "fd00::2"
    for value in ("nope", "198.19.0.1\nup /x", 7, ""):
        with pytest.raises(ValueError, match="the address filter needs an IP address"):
            address(value)
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "template.yaml").write_text("description: x\nargv: [prog]\nfiles: [{name: c, source: c.j2}]\n")
    (directory / "c.j2").write_text("line one\nifconfig {{ vars.where | address }}\n")
    mine = load_template(directory)
    with pytest.raises(LaunchError) as caught:
        render(mine, prepare(mine), context(where="somewhere"), tmp_path / "run")
    assert str(caught.value).startswith(f"{directory / 'c.j2'}:2: ValueError: the address filter needs an IP ")


def test_manifest_vars_are_checked(tmp_path: Path) -> None:
    for number, (declaration, error) in enumerate([
        ("{mtu: number}", r"vars\.mtu: unknown kind 'number' \(one of address, port, integer"),
        ("{'bad name': text}", r"vars: 'bad name' is not a variable name"),
        ("[mtu]", r"vars: must be a mapping"),
    ]):
        directory = tmp_path / f"t{number}"
        directory.mkdir()
        (directory / "template.yaml").write_text(f"description: x\nargv: [prog]\nvars: {declaration}\n")
        with pytest.raises(LaunchError, match=error):
            load_template(directory)


@pytest.mark.parametrize("name", sorted(GOOD_VARS))
def test_builtins_declare_every_var_they_use(name: str) -> None:
    template = find_template(name)
    sources = [(template.path / "template.yaml").read_text()]
    sources += [(template.path / spec.source).read_text() for spec in template.files]
    used = set(re.findall(r"\bvars\.([A-Za-z_][A-Za-z0-9_]*)", "\n".join(sources)))
    assert used and used <= set(template.vars), used - set(template.vars)
    assert set(template.needs) <= set(template.vars)


@pytest.mark.parametrize("name", sorted(GOOD_VARS))
def test_no_builtin_puts_a_secret_on_argv(tmp_path: Path, name: str) -> None:
    template = find_template(name)
    ctx = replace(context(**full_vars(name)), peer_values=prepare(template).exports)
    rendered = render(template, prepare(template), ctx, tmp_path / "run")
    assert SECRET.hex() in rendered.secrets
    for secret in rendered.secrets:
        assert not any(secret in arg for arg in rendered.argv), name
        assert not any(secret in value for value in rendered.env.values()), name
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in rendered.files.values())


def test_exec_passes_the_secret_in_a_private_file(tmp_path: Path) -> None:
    template = find_template("exec")
    rendered = render(template, prepare(template), context(command="/usr/local/bin/on-connect"), tmp_path / "run")
    assert len(rendered.argv) == 8 and rendered.argv[0] == "/usr/local/bin/on-connect"
    assert not any(SECRET.hex() in arg for arg in rendered.argv)
    secret_file = Path(rendered.argv[7])
    assert secret_file == rendered.files["secret"] and secret_file.parent == tmp_path / "run"
    assert secret_file.read_text() == SECRET.hex() + "\n"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
    assert "SECRETFILE" in template.description
