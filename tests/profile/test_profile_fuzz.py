"""No input makes plexus print a traceback: random YAML documents and random bytes, to the library and to the
CLI in-process. Every line printed is a ``file:line:col: ...`` problem, the summary, or one ``plexus: ...``."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import EXAMPLES

from plexus.cli import main
from plexus.profile import validate

EXAMPLE = EXAMPLES / "laptop.yaml"
KEYS = ["version", "host", "id", "address", "role", "peers", "rendezvous", "email", "smtp", "imap", "port",
        "tls", "password", "env", "file", "command", "stun", "servers", "bind", "punch", "hops", "timeout",
        "payload", "template", "vars", "extends", "authentication", "smime", "certificate", "key", "psk"]
SHAPES = [re.compile(p) for p in (
    r"^.+:\d+:\d+: \S.*$",  # a problem
    r"^plexus validate: \d+ profiles?, .*$",  # the summary
    r"^plexus: [^\n]+$",  # one error line
)]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["30s", "500ms", "openvpn", "smime", "a:1", "x.yaml"]))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children,
                                               max_size=5)),
    max_leaves=25)


def near_valid() -> st.SearchStrategy[dict[str, Any]]:
    """The laptop example with one random key replaced somewhere: reaches the deeper checks."""
    base = yaml.safe_load(EXAMPLE.read_text())

    def mutate(path: list[str], value: Any) -> dict[str, Any]:
        data = yaml.safe_load(EXAMPLE.read_text())
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            node[path[-1]] = value
        return data

    paths = [[k] for k in base] + [[k, sub] for k, v in base.items() if isinstance(v, dict) for sub in v]
    return st.builds(mutate, st.sampled_from(paths), documents)


def check_output(text: str) -> None:
    assert "Traceback" not in text
    for line in text.splitlines():
        assert any(shape.match(line) for shape in SHAPES), repr(line)


def run(data: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        shutil.copytree(EXAMPLE.parent / "certs", Path(directory) / "certs")
        path = Path(directory) / "fuzz.yaml"
        path.write_bytes(data)
        for problem in validate(path):
            assert "\n" not in str(problem) and str(problem).startswith(f"{path}:")
        capsys.readouterr()
        code = main(["validate", str(path)])
        out, err = capsys.readouterr()
        assert code in (0, 2), (code, out, err)
        check_output(out + err)
        code = main(["render", str(path), "--peer", "198.18.0.2:4000", "--json"])
        out, err = capsys.readouterr()
        assert code in (0, 2), (code, out, err)
        if code == 2:
            check_output(err)
            assert len(err.splitlines()) == 1


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(documents)
def test_random_yaml_documents(capsys: pytest.CaptureFixture[str], document: Any) -> None:
    run(yaml.safe_dump(document, allow_unicode=True).encode(), capsys)


@FUZZ
@given(near_valid())
def test_near_valid_profiles(capsys: pytest.CaptureFixture[str], document: Any) -> None:
    run(yaml.safe_dump(document, allow_unicode=True).encode(), capsys)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    run(data, capsys)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("{}[]:-,&*!|>'\"#% \t\n\r?abc1@`\\")), max_size=80))
def test_random_yaml_syntax(capsys: pytest.CaptureFixture[str], text: str) -> None:
    run(text.encode(), capsys)
