"""Template manifests: lookup order, and one clear line for every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plexus.errors import LaunchError
from plexus.launch.template import find_template, list_templates, load_template

BUILTINS = {"openvpn", "wireguard", "socat", "exec"}


def make(root: Path, name: str, manifest: str, **sources: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "template.yaml").write_text(manifest)
    for source, text in sources.items():
        (directory / source.replace("_", ".")).write_text(text)
    return directory


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config


def test_builtins_load_and_list() -> None:
    names = {t.name for t in list_templates()}
    assert names >= BUILTINS
    openvpn = find_template("openvpn")
    assert openvpn.needs == ["tunnel", "remote_tunnel"]
    assert openvpn.keys == {"tls": "tls-cert"}
    assert set(openvpn.exports) == {"fingerprint"}
    assert [f.mode for f in openvpn.files] == [0o600]
    assert openvpn.ready == "Initialization Sequence Completed"
    assert find_template("wireguard").keys == {"wg": "wireguard"}


def test_user_dir_overrides_builtin_and_profile_dir_overrides_user(isolated_config: Path, tmp_path: Path) -> None:
    user = make(isolated_config / "plexus" / "templates", "openvpn", "description: mine\nargv: [true]\n")
    assert find_template("openvpn").path == user
    assert find_template("openvpn").description == "mine"
    assert {t.name: t.path for t in list_templates()}["openvpn"] == user
    profile_dir = tmp_path / "profiles"
    local = make(profile_dir / "templates", "openvpn", "description: local\nargv: [true]\n")
    assert find_template("openvpn", profile_dir).path == local
    assert find_template("wireguard", profile_dir).path.parent.name == "exec"  # others stay built-in


def test_find_by_path(tmp_path: Path) -> None:
    directory = make(tmp_path, "mine", "description: by path\nargv: [true]\n")
    assert find_template(str(directory)).description == "by path"
    assert find_template("./mine", tmp_path).path == directory


def test_missing_template_names_the_known_ones() -> None:
    with pytest.raises(LaunchError) as caught:
        find_template("openvnp")
    assert "openvnp" in str(caught.value) and "openvpn" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("description: x\nargv: [true]\nneeds: [a]\nexport: {}\n", "'export': unknown field (did you mean 'exports'?)"),
        ("description: x\n", "argv: required"),
        ("argv: [true]\n", "description: required"),
        ("description: x\nargv: true\n", "argv: must be a list"),
        ("description: x\nargv: [true]\nkeys: {k: rsa}\n", "keys.k: unknown kind 'rsa'"),
        ("description: x\nargv: [true]\nneeds: [two words]\n", "needs: 'two words' is not a variable name"),
        ("description: x\nargv: [true]\nready: '(unclosed'\n", "ready: bad regular expression"),
        ("description: x\nargv: [true]\nready_timeout: soon\n", "ready_timeout: a positive duration"),
        ("description: x\nargv: [true]\nfiles: [{name: a.conf, source: nope.j2}]\n", "files[0].source"),
        ("description: x\nargv: [true]\nfiles: [{name: ../a, source: a.j2}]\n", "files[0].name"),
        ("description: x\nargv: [true]\nfiles: [{name: a, source: a.j2, mode: 0600}]\n", "files[0].mode"),
        ("description: x\nargv: [true]\nfiles: [{name: a, source: a.j2, mode: '0666'}]\n", "lets others write"),
        ("description: x\nargv: ['{{ inner.ip ']\n", "argv[0]:"),
        ("description: x\nargv: [true\n", "template.yaml:3:1:"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_manifest_mistakes_give_one_line(tmp_path: Path, manifest: str, expected: str) -> None:
    directory = make(tmp_path, "bad", manifest, a_j2="x\n")
    with pytest.raises(LaunchError) as caught:
        load_template(directory)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and str(directory / "template.yaml") in message


def test_jinja_syntax_error_in_a_file_names_file_and_line(tmp_path: Path) -> None:
    directory = make(tmp_path, "bad", "description: x\nargv: [true]\nfiles: [{name: c, source: c.j2}]\n",
                     c_j2="line one\nline two\n{% if %}\n")
    with pytest.raises(LaunchError) as caught:
        load_template(directory)
    assert str(caught.value).startswith(f"{directory / 'c.j2'}:3:")


def test_broken_user_template_is_reported_by_find_and_skipped_by_list(isolated_config: Path) -> None:
    make(isolated_config / "plexus" / "templates", "broken", "description: x\n")
    assert "broken" not in {t.name for t in list_templates()}
    with pytest.raises(LaunchError, match="argv: required"):
        find_template("broken")


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                     st.sampled_from(["{{ x", "{% if %}", "0600", "0666", "tls-cert", "a.j2", "../x", "{{ keys.k }}"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8) | st.sampled_from(["name", "source", "mode"]), inner, max_size=3), max_leaves=8)
_manifests = st.dictionaries(
    st.sampled_from(["description", "needs", "keys", "exports", "files", "argv", "env", "ready", "ready_timeout",
                     "failure", "extra"]), _values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=_manifests)
def test_random_manifests_load_or_fail_in_one_line(tmp_path: Path, manifest: dict[str, object]) -> None:
    directory = tmp_path / "random"
    directory.mkdir(exist_ok=True)
    (directory / "a.j2").write_text("{{ inner.ip }}\n")
    (directory / "template.yaml").write_text(yaml.safe_dump(manifest))
    try:
        load_template(directory)
    except LaunchError as exc:
        assert "\n" not in str(exc) and str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_fail_in_one_line(tmp_path: Path, data: bytes) -> None:
    directory = tmp_path / "bytes"
    directory.mkdir(exist_ok=True)
    (directory / "template.yaml").write_bytes(data)
    with pytest.raises(LaunchError) as caught:
        load_template(directory)
    assert "\n" not in str(caught.value)
