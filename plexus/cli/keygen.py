"""``plexus keygen PROFILE``: create the DHT identity (key and certificate) a profile names."""

from __future__ import annotations

import argparse

from plexus.errors import ProfileError
from plexus.profile.model import Profile
from plexus.rendezvous.dht.identity import identity_files, load_own
from plexus.rendezvous.smime import fingerprint


def _load_for_keygen(name: str) -> Profile:
    """The profile, even while the identity files it names do not exist yet (keygen is what creates them)."""
    from plexus.profile import find_profile, load

    try:
        return load(name)
    except ProfileError as error:
        problems = getattr(error, "problems", None) or []
        ours = {"rendezvous.smime.certificate", "rendezvous.smime.key"}
        if not problems or any(problem.field not in ours for problem in problems):
            raise
    from plexus.profile.build import build_profile
    from plexus.profile.document import load_document

    return build_profile(load_document(find_profile(name)), ())


def run_keygen(args: argparse.Namespace) -> int:
    from plexus.rendezvous.dht.identity import generate

    profile = _load_for_keygen(args.profile)
    files = identity_files(profile)
    present = files.exist()
    if all(present) and not args.force:
        certificate = load_own(profile).certificate
        print(f"{files.certificate}: the identity of {profile.host.id!r} exists already "
              f"(fingerprint {fingerprint(certificate).hex()}); --force replaces it")
        return 0
    if any(present) and not args.force:
        existing = files.certificate if present[0] else files.key
        raise ProfileError(f"{existing} exists but its {'key' if present[0] else 'certificate'} does not",
                           hint="plexus keygen --force PROFILE makes a new pair")
    certificate = generate(files, profile.host.id, profile.host.address)
    print(f"wrote {files.key} (private, mode 0600) and {files.certificate}")
    print(f"fingerprint {fingerprint(certificate).hex()}")
    print(f"give {files.certificate} to your peers: their profiles name it as peers[].certificate "
          f"(id {profile.host.id!r})")
    return 0
