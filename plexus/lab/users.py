"""Normal (non-root) users in the lab: ``plexus lab exec --user NAME SITE -- COMMAND`` and
``Lab.run(site, argv, user=NAME)`` run a command in a site's namespace as that user, without capabilities, with
the site's lab environment (``Lab.env``), and a HOME and a PLEXUS_STATE_DIR of its own: ``users/<user>/<site>/
home`` and ``.../state`` in the lab's state directory (0700, owned by the user).

The switch is util-linux ``setpriv --reuid=UID --regid=GID --init-groups --inh-caps=-all`` (Debian 12 has it;
``runuser`` would open a PAM session): setresuid to a non-zero UID clears the permitted and effective
capabilities, ``--inh-caps=-all`` the inheritable ones, so the command has none (CapEff 0), as after a normal
login (the bounding set is kept and no_new_privs is not set: set-uid programs and file capabilities work).

The lab's own user is ``plexus-lab`` (LAB_USER), a system user ``lab up`` creates when it is missing and
``lab down`` leaves: ``useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /bin/sh
--password '*' plexus-lab``. Its shell is /bin/sh, not nologin, because sshd runs every command through the
login shell (``ssh plexus-lab@127.0.0.1 true`` in site b); its password ``*`` matches no password, and unlike
useradd's default ``!`` it does not count as locked for sshd with UsePAM no (which refuses even a key then).

The user must reach the Python interpreter and the plexus source (``check_access``): an interpreter under a
0700 folder (pyenv under /root) is refused with one line saying what to do (``chmod o+x`` of its folders, as
.ci/run does on CI machines).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import plexus
from plexus.errors import LabError
from plexus.lab import system
from plexus.lab.state import LabState

LAB_USER = "plexus-lab"
LAB_USER_SHELL = "/bin/sh"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # after the interpreter's own folder


def lookup(name: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``; root is refused (``lab exec`` without --user is root's)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        hint = "plexus lab up creates it" if name == LAB_USER else f"useradd --system {name}, or --user {LAB_USER}"
        raise LabError(f"no user {name!r} on this machine", hint=hint) from None
    if entry.pw_uid == 0:
        raise LabError(f"user {name!r} is root", hint="--user is for a normal user; leave it out to run as root")
    return entry


def ensure_lab_user() -> pwd.struct_passwd:
    """The lab user ``plexus-lab``, created (or given its shell and unlocked password) when needed. Several
    labs coming up at once may race to create it: a failed useradd is fine when the user exists after all."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            entry = pwd.getpwnam(LAB_USER)
            break
        except KeyError:
            pass
        done = system.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", LAB_USER_SHELL, "--password", "*", LAB_USER], check=False)
        if done.returncode != 0:
            if time.monotonic() > deadline:
                raise LabError(f"cannot create the lab user {LAB_USER}",
                               hint=(done.stderr.strip().splitlines() or ["useradd failed"])[-1])
            time.sleep(0.1)  # another lab holds the passwd lock
    if entry.pw_shell != LAB_USER_SHELL or _locked(LAB_USER):
        system.run(["usermod", "--shell", LAB_USER_SHELL, "--password", "*", LAB_USER])
        entry = pwd.getpwnam(LAB_USER)
    return entry


def _locked(name: str) -> bool:
    try:
        lines = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        return False
    return any(line.split(":")[0] == name and line.split(":")[1].startswith("!") for line in lines)


def switch_argv(entry: pwd.struct_passwd) -> list[str]:
    """The command prefix that runs what follows as ``entry``'s user, its groups, no capabilities."""
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--inh-caps=-all", "--"]


def site_dirs(state: LabState, name: str, site: str) -> tuple[Path, Path]:
    """``(home, plexus state dir)`` of user ``name`` in ``site`` (the paths only; ``make_site_dirs`` makes them)."""
    base = state.dir / "users" / name / site
    return base / "home", base / "state"


def make_site_dirs(state: LabState, entry: pwd.struct_passwd, site: str) -> tuple[Path, Path]:
    """Make the user's HOME and PLEXUS_STATE_DIR for ``site``: its folders 0700 and owned by it."""
    users = state.dir / "users"
    users.mkdir(exist_ok=True)
    users.chmod(0o755)
    home, plexus_state = site_dirs(state, entry.pw_name, site)
    for path in (users / entry.pw_name, home.parent, home, plexus_state):
        path.mkdir(exist_ok=True)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)
    return home, plexus_state


def user_env(env: Mapping[str, str], entry: pwd.struct_passwd, home: Path, plexus_state: Path) -> dict[str, str]:
    """``env`` (a site's lab environment) for the user: its HOME, PLEXUS_STATE_DIR, USER and LOGNAME, and a PATH
    starting with the interpreter's folder (so ``plexus`` and ``python3`` are this plexus, not root's shims)."""
    changed = {key: value for key, value in env.items() if not key.startswith(("SUDO_", "PYENV_", "XDG_"))}
    changed.update({"HOME": str(home), "USER": entry.pw_name, "LOGNAME": entry.pw_name, "SHELL": entry.pw_shell,
                    "PLEXUS_STATE_DIR": str(plexus_state), "PATH": f"{Path(sys.executable).parent}:{USER_PATH}"})
    changed.pop("MAIL", None)
    return changed


def _gids(entry: pwd.struct_passwd) -> set[int]:
    return set(os.getgrouplist(entry.pw_name, entry.pw_gid))


def _allows(info: os.stat_result, entry: pwd.struct_passwd, gids: set[int], need: int) -> bool:
    """Whether ``entry``'s user has the ``need`` bits (4 r, 1 x) on a file with ``info`` (mode bits only)."""
    if info.st_uid == entry.pw_uid:
        bits = (info.st_mode >> 6) & 7
    elif info.st_gid in gids:
        bits = (info.st_mode >> 3) & 7
    else:
        bits = info.st_mode & 7
    return bits & need == need


def blocker(path: str, entry: pwd.struct_passwd, need: int = 4) -> str | None:
    """Why ``entry``'s user cannot use ``path`` (a folder on the way it cannot enter, or ``path`` lacks the
    ``need`` bits), None when it can."""
    gids = _gids(entry)
    parts = Path(os.path.abspath(path)).parts
    for depth in range(1, len(parts)):
        folder = os.path.join(*parts[:depth])
        try:
            info = os.stat(folder)
        except OSError:
            return f"{folder} is missing"
        if not _allows(info, entry, gids, 1):
            return f"{folder} is {stat.S_IMODE(info.st_mode):04o} {_owner(info)}"
    try:
        info = os.stat(path)
    except OSError:
        return f"{path} is missing"
    if not _allows(info, entry, gids, need):
        return f"{path} is {stat.S_IMODE(info.st_mode):04o} {_owner(info)}"
    return None


def _owner(info: os.stat_result) -> str:
    try:
        return f"{pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}"
    except KeyError:
        return f"{info.st_uid}:{info.st_gid}"


def check_access(entry: pwd.struct_passwd) -> None:
    """Raise a one-line LabError unless ``entry``'s user can run this Python (the interpreter as invoked and
    its real file, the standard library) and import this plexus."""
    needs = [(sys.executable, 1), (os.path.realpath(sys.executable), 1), (os.__file__, 4), (plexus.__file__, 4)]
    for path, need in needs:
        if (why := blocker(path, entry, need)) is not None:
            what = "the plexus source" if path == plexus.__file__ else "the Python interpreter"
            raise LabError(f"user {entry.pw_name} cannot reach {what} {path}: {why}",
                           hint="chmod o+x each folder on its way, as .ci/run does on CI machines, or install "
                                "Python and plexus where every user can read them")


def checked(name: str) -> pwd.struct_passwd:
    """``lookup(name)``, after ``check_access``: the user exists, is not root, and reaches Python and plexus."""
    entry = lookup(name)
    check_access(entry)
    return entry


def working_dir(entry: pwd.struct_passwd, home: Path) -> str | None:
    """Where a command as ``entry``'s user starts: here (None) when it can enter this folder, else ``home``."""
    try:
        here = os.getcwd()
    except OSError:
        return str(home)
    return None if blocker(here, entry, 1) is None else str(home)
