"""The wheel carries the schema and templates: built, installed into a fresh venv outside the source tree,
and used there (validate, render, schema) with no checkout in sight."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PLEXUS_PROFILE_PATH")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_wheel_installs_and_runs_outside_the_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], cwd=tmp_path)
    if built.returncode != 0:
        pytest.fail(f"python -m build failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}")
    wheel = next(dist.glob("plexus-*.whl"))
    venv = tmp_path / "venv"
    # system site-packages for the dependencies (already installed); plexus itself only from the wheel
    made = run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    installed = run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel],
                    cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "work"
    work.mkdir()
    where = run([venv / "bin" / "python", "-c", "import plexus; print(plexus.__file__)"], cwd=work)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr

    for name in ("laptop.yaml", "home-server.yaml", "mailbox-base.yaml"):
        shutil.copy(ROOT / "profiles" / "examples" / name, work / name)
    shutil.copytree(ROOT / "profiles" / "examples" / "certs", work / "certs")
    plexus = venv / "bin" / "plexus"
    validated = run([plexus, "validate", "laptop.yaml", "home-server.yaml", "mailbox-base.yaml"], cwd=work)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "3 profiles, all valid" in validated.stderr

    broken = work / "broken.yaml"
    broken.write_text((work / "laptop.yaml").read_text().replace("template: openvpn", "template: nope"))
    invalid = run([plexus, "validate", broken], cwd=work)
    assert invalid.returncode == 2 and "payload.template" in invalid.stdout, invalid.stdout + invalid.stderr

    rendered = run([plexus, "render", "home-server.yaml", "--peer", "198.18.0.2:40001", "--json"], cwd=work)
    assert rendered.returncode == 0, rendered.stderr
    result = json.loads(rendered.stdout)
    assert Path(result["template"]).is_relative_to(venv)  # the built-in template came from the wheel
    assert result["argv"][0] == "openvpn" and "remote 198.18.0.2 40001" in result["files"]["openvpn.conf"]["content"]

    schema = run([plexus, "schema"], cwd=work)
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"] == "plexus profile"
