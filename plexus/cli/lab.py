"""``plexus lab up|down|status|exec``: a thin shell over ``plexus.lab.Lab``."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from plexus.errors import LabError
from plexus.lab import network, sshd, system
from plexus.lab.lab import Lab
from plexus.lab.topology import SITES, possible_namespaces


def run_lab(args: argparse.Namespace) -> int:
    command = getattr(args, "lab_command", None)
    if command == "up":
        return _up(args)
    if command == "down":
        return _down()
    if command == "status":
        return _status(args)
    if command == "exec":
        return _exec(args)
    if command == "demo":
        from plexus.lab.demo import run_demo

        return run_demo(args)
    raise LabError("which lab command?", hint="plexus lab up | down | status | exec [--user NAME] SITE -- COMMAND")


def _up(args: argparse.Namespace) -> int:
    system.check_host()  # not root / not Linux / a package missing: say so even when a lab is up
    lab = Lab()
    nat = {site: getattr(args, f"nat_{site}") for site in SITES if getattr(args, f"nat_{site}", None)}
    if not args.force and lab.state.exists() and lab.is_up():
        return _change_running(lab, args, nat)
    started = time.monotonic()
    lab = Lab.up(nat=nat, path_length=args.path_length or 3, loss_pct=args.loss or 0.0,
                 delay_ms=args.delay or 0.0, force=args.force)
    elapsed = time.monotonic() - started
    topology = lab.topology
    print(f"lab {lab.name!r} up in {elapsed:.2f} s: STUN {lab.stun_primary[0]}:{lab.stun_primary[1]} + "
          f"{lab.stun_alternate[0]}:{lab.stun_alternate[1]}, TURN {lab.turn_server[0]}:{lab.turn_server[1]} "
          f"(REST {lab.turn_rest_server[0]}:{lab.turn_rest_server[1]}), mail {lab.mail_host} (IMAPS 993, "
          f"SMTPS 465, submission 587), {topology.path_length} routers between the NATs")
    for site in SITES:
        print(f"  site {site}: {lab.user(site)} {lab.host_address(site)} behind NAT {lab.nat(site)} "
              f"({lab.public_address(site)}), profiles in {lab.profile_dir(site)}")
    print(f"  sshd on site b {sshd.HOST}:{lab.ssh_port} for {lab.ssh_user} (key {lab.ssh_client_key}); "
          f"forward profiles: alice-forward on b, bob-forward on a and c")
    print("try: plexus lab exec b -- plexus up alice   and   plexus lab exec a -- plexus up bob")
    return 0


def _change_running(lab: Lab, args: argparse.Namespace, nat: dict[str, Any]) -> int:
    """``lab up`` on a running lab: apply what can change at run time (NAT kinds, ``double`` included: the site
    is rewired; loss, delay) and say so; the path length needs a rebuild."""
    if args.path_length is not None and args.path_length != lab.topology.path_length:
        raise LabError(f"lab {lab.name!r} is up with {lab.topology.path_length} routers between the NATs",
                       hint="plexus lab up --force --path-length N rebuilds it")
    changes = []
    for site, kind in nat.items():
        if kind != lab.nat(site):
            lab.set_nat(site, kind)
            changes.append(f"NAT {site} {kind}")
    netem = lab.config["netem"]
    loss = netem["loss_pct"] if args.loss is None else args.loss
    delay = netem["delay_ms"] if args.delay is None else args.delay
    if (loss, delay) != (netem["loss_pct"], netem["delay_ms"]):
        lab.set_netem(loss, delay)
        changes.append(f"loss {loss:g}%, delay {delay:g} ms")
    if changes:
        print(f"lab {lab.name!r} is up; changed: {'; '.join(changes)}")
    else:
        print(f"lab {lab.name!r} is already up (plexus lab status; plexus lab up --force rebuilds it)")
    return 0


def _down() -> int:
    system.check_host()
    lab = Lab()
    leftovers = network.existing_namespaces(possible_namespaces(lab.name))
    if not lab.state.exists() and not leftovers:
        print(f"lab {lab.name!r} is not up; nothing to remove")
        return 0
    started = time.monotonic()
    lab.down()
    print(f"lab {lab.name!r} removed in {time.monotonic() - started:.2f} s")
    return 0


def _status(args: argparse.Namespace) -> int:
    lab = Lab()
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0 if status["up"] else 1
    if not lab.state.exists():
        print(f"lab {lab.name!r}: down")
        return 1
    _print_status(status)
    return 0 if status["up"] else 1


def _print_status(status: dict[str, Any]) -> None:
    state = "up" if status["up"] else "BROKEN (plexus lab down, then up)"
    print(f"lab {status['name']!r}: {state}; state in {status['state_dir']}")
    print(f"  namespaces: {len(status['namespaces'])} ({', '.join(status['namespaces'])})")
    for label, daemon in status["daemons"].items():
        print(f"  {label}: pid {daemon['pid']} {'running' if daemon['alive'] else 'DEAD'}")
    turn = status["turn"]
    print(f"  TURN: {turn['long_term']} (long-term, realm {turn['realm']}, {turn['allocations']} allocation(s)), "
          f"{turn['rest']} (REST secret)")
    ssh = status["ssh"]
    print(f"  sshd: site {ssh['site']} {ssh['listen']}, user {ssh['user']}, key {ssh['client_key']}, "
          f"known_hosts {ssh['known_hosts']}")
    print(f"  STUN: {', '.join(status['stun'])}; mail: {status['mail']['host']} "
          f"(no IDLE: {status['mail']['no_idle_host']}), domain {status['mail']['domain']}")
    netem = status["netem"]
    print(f"  path: {status['path_length']} routers between NATs; netem loss {netem['loss_pct']:g}% "
          f"delay {netem['delay_ms']:g} ms")
    for site, info in status["sites"].items():
        print(f"  site {site}: {info['user']} {info['host']} NAT {info['nat']} -> {info['public']}; "
              f"profiles {info['profiles']}")
    if status["processes"]:
        print(f"  {status['processes']} process(es) started in the lab (stopped by plexus lab down)")


def _exec(args: argparse.Namespace) -> int:
    system.check_host()
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise LabError("no command given", hint=f"plexus lab exec [--user NAME] {args.site} -- COMMAND...")
    lab = Lab()
    if not lab.is_built():
        raise LabError(f"lab {lab.name!r} is not up", hint="plexus lab up")
    command, env, cwd = lab.invocation(args.site, argv, user=getattr(args, "user", None))
    if cwd is not None:
        os.chdir(cwd)  # the user cannot enter the folder we are in
    try:
        os.execvpe(command[0], command, env)
    except OSError as error:
        raise LabError(f"cannot run {argv[0]}: {error.strerror}") from error
    return 127  # not reached
