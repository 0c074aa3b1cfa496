"""A mailbox operator replaying a real invite (issue: replay safety), in the lab: alice's genuine invite is
copied from bob's mailbox as it arrives, then delivered again (a) to a restarted acceptor with no session and
(b) while a newer session's tunnel is up. Neither launches anything, and the tunnel stays up. (The same for a
value re-put on the DHT: test_dht_lab.py.)"""

from __future__ import annotations

import imaplib
import time
from typing import Any

from support.mailbox import append, clear, in_mailbox
from support.up import drops, invites_taken, launched, ping, up, wait_event


def copy_offer(lab: Any, user: str, timeout: float = 15.0) -> bytes:
    """The raw bytes of the first plexus offer in the user's INBOX, read without touching it (BODY.PEEK)."""
    def action(client: imaplib.IMAP4_SSL) -> bytes | None:
        _status, found = client.uid("SEARCH", None, "HEADER", "X-Plexus-Offer", "1")  # type: ignore[arg-type]
        uids = found[0].split() if found and found[0] else []
        if not uids:
            return None
        _status, data = client.uid("FETCH", uids[0].decode(), "(BODY.PEEK[])")
        return next(item[1] for item in data if isinstance(item, tuple))

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = in_mailbox(lab, user, action)
        if message:
            return message  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"no plexus offer reached {user}'s mailbox within {timeout} s")






def test_a_replayed_invite_launches_nothing_and_leaves_the_tunnel_up(lab: Any, site_spawn: Any,
                                                                     site_run: Any) -> None:
    clear(lab, "bob")
    alice = up(site_spawn, "a", "bob")  # bob is not running yet: the invite waits in his mailbox for us to copy
    captured = copy_offer(lab, "bob")
    bob = up(site_spawn, "b", "alice")
    for side in (alice, bob):
        wait_event(side, "payload", "info", timeout=30)
    alice.stop(), bob.stop()

    restarted = up(site_spawn, "b", "alice")  # a new acceptor process: its memory is the state folder's
    wait_event(restarted, "offer-received", "start")
    append(lab, "bob", [(captured, "")])
    drops(restarted, "replayed (nonce seen before)")

    alice = up(site_spawn, "a", "bob")  # a newer session, then the old invite once more while its tunnel is up
    for side in (alice, restarted):
        wait_event(side, "payload", "info", timeout=30)
    append(lab, "bob", [(captured, "")])
    drops(restarted, "replayed (nonce seen before)", count=2)
    assert invites_taken(restarted) == 1 and len([e for e in launched(restarted) if e["status"] == "ok"]) == 1
    assert restarted.returncode is None and alice.returncode is None
    assert ping(site_run, "a", "198.19.0.2"), "the tunnel went down after the replay"
