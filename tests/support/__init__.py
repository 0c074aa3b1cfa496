"""Helpers shared by the tests (no tests here): profiles built in code, carriers, the lab's mailboxes, driving
`plexus up` in lab sites, DHT identities, namespace pairs, STUN on loopback, TLS certificates."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout: tests/support/ -> tests/ -> the repository
EXAMPLES = REPO / "profiles" / "examples"
