"""``plexus doctor`` in the lab: every check passes for a lab profile; a wrong password, an unreachable
server, an untrusted server certificate and a mismatched S/MIME key each give one clear failing row and exit 1,
never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.rendezvous import Pki

DOCTOR = ["python3", "-m", "plexus.cli", "doctor"]


def doctor(site_run: Any, site: str, profile: str | Path, env: dict[str, str] | None = None
           ) -> tuple[int, dict[str, Any], str]:
    done = site_run(site, [*DOCTOR, str(profile), "--json"], env=env, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def test_lab_profile_passes(site_run: Any) -> None:
    code, report, _ = doctor(site_run, "a", "bob")
    checks = rows(report)
    assert code == 0 and report["ok"] is True
    for name in ("profile", "SMTP server", "SMTP login", "IMAP server", "IMAP login", "IMAP IDLE",
                 "S/MIME certificate", "S/MIME CA", "peer bob certificate", "STUN", "NAT", "payload program"):
        assert checks[name]["status"] in ("ok", "warn"), checks[name]  # warn: the lab's certs live 30 days
    assert checks["IMAP IDLE"]["status"] == "ok" and "TLS verified" in checks["IMAP server"]["detail"]
    turn = checks["TURN turn:198.18.0.12:3478"]
    assert turn["status"] == "ok" and "relayed address 198.18.0.12:" in turn["detail"], turn
    human = site_run("a", [*DOCTOR, "bob"], timeout=60)
    assert human.returncode == 0 and "SMTP login" in human.stdout


def test_wrong_password_is_one_line(site_run: Any) -> None:
    code, report, _ = doctor(site_run, "a", "bob", env={"PLEXUS_MAIL_PASSWORD": "not-the-password"})
    checks = rows(report)
    assert code == 1
    assert checks["SMTP login"]["status"] == "fail" and "rejected the login 'alice'" in checks["SMTP login"]["detail"]
    assert checks["IMAP login"]["status"] == "fail" and "password" in checks["IMAP login"]["fix"]
    assert "\n" not in checks["IMAP login"]["detail"]


def test_wrong_turn_password_is_one_line(site_run: Any) -> None:
    code, report, _ = doctor(site_run, "a", "bob", env={"PLEXUS_TURN_PASSWORD": "not-the-password"})
    turn = rows(report)["TURN turn:198.18.0.12:3478"]
    assert code == 1 and turn["status"] == "fail", turn
    assert turn["detail"] == "turn:198.18.0.12:3478 refused our credentials (401 Unauthorized)"
    assert "username and password" in turn["fix"] and "not-the-password" not in json.dumps(report)


def test_unreachable_server_and_untrusted_certificate(lab: Any, site_run: Any, tmp_path: Path) -> None:
    closed = lab.write_profile("a", "closed", directory=tmp_path,
                               rendezvous={"email": {"smtp": {"port": 2525}, "imap": {"port": 9993}}})
    code, report, _ = doctor(site_run, "a", closed)
    checks = rows(report)
    assert code == 1
    assert checks["SMTP server"]["status"] == "fail" and "198.18.0.25:2525" in checks["SMTP server"]["detail"]
    assert checks["IMAP server"]["status"] == "fail" and "198.18.0.25:9993" in checks["IMAP server"]["detail"]
    assert "SMTP login" not in checks

    other_ca = Pki(tmp_path, "some other CA")
    untrusted = lab.write_profile("a", "untrusted", directory=tmp_path,
                                  rendezvous={"email": {"ca": str(other_ca.ca_path)}})
    code, report, _ = doctor(site_run, "a", untrusted)
    checks = rows(report)
    assert code == 1
    for name in ("SMTP server", "IMAP server"):
        assert checks[name]["status"] == "fail", checks[name]
        assert "TLS certificate not trusted" in checks[name]["detail"], checks[name]
        assert "rendezvous.email.ca" in checks[name]["fix"]


def test_smime_key_mismatch_and_expired_peer_certificate(lab: Any, site_run: Any, tmp_path: Path) -> None:
    profile = lab.write_profile("a", "mismatch", directory=tmp_path, rendezvous={
        "smime": {"key": str(lab.key("carol"))}})
    code, report, _ = doctor(site_run, "a", profile)
    failing = [check for check in report["checks"] if check["status"] == "fail"]
    assert code == 1 and len(failing) == 1 and "carol.key" in failing[0]["detail"], failing

    expired = Pki(tmp_path).user("bob", days=-1, stem="bob-expired")
    profile = lab.write_profile("a", "expired", directory=tmp_path, rendezvous={"smime": {"ca": None}})
    text = profile.read_text().replace(str(lab.certificate("bob")), str(expired.certificate))
    profile.write_text(text)
    code, report, _ = doctor(site_run, "a", profile)
    failing = [check for check in report["checks"] if check["status"] == "fail"]
    assert code == 1 and len(failing) == 1 and "expired" in failing[0]["detail"], failing


@pytest.mark.parametrize("name", ["no-such-profile"])
def test_missing_profile_is_one_failing_row(site_run: Any, name: str) -> None:
    code, report, _ = doctor(site_run, "a", name)
    assert code == 1 and report["checks"][0]["name"] == "profile" and report["checks"][0]["status"] == "fail"
    assert len(report["checks"]) == 1
