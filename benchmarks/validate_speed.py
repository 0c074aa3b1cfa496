"""Wall time of ``plexus validate <one profile>`` as a fresh process: median and p95 over 20 runs.

    python3 benchmarks/validate_speed.py [PROFILE]    # default: profiles/examples/laptop.yaml

Target: < 150 ms. Also prints the bare interpreter start (``python -c pass``) of this machine for scale, and
runs once with a pseudo-terminal (coloured output through rich) as well as with output to a pipe.
"""

from __future__ import annotations

import os
import pty
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 20


def command(profile: str) -> list[str]:
    installed = shutil.which("plexus")
    return [installed, "validate", profile] if installed else [sys.executable, "-m", "plexus.cli", "validate",
                                                               profile]


def run_piped(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def run_on_tty(argv: list[str]) -> float:
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.chdir(ROOT)
        os.execv(argv[0], argv)
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except OSError:
            break
    os.waitpid(pid, 0)
    os.close(fd)
    return time.perf_counter() - start


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{label:<34} median {statistics.median(samples) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   "
          f"(n={len(samples)})")


def main() -> None:
    profile = sys.argv[1] if len(sys.argv) > 1 else "profiles/examples/laptop.yaml"
    argv = command(profile)
    print(f"command: {' '.join(argv)}")
    run_piped(argv)  # warm the page cache and .pyc files
    report("python -c pass (baseline)", [run_piped([sys.executable, "-c", "pass"]) for _ in range(RUNS)])
    report("plexus validate (output to pipe)", [run_piped(argv) for _ in range(RUNS)])
    report("plexus validate (terminal)", [run_on_tty(argv) for _ in range(RUNS)])


if __name__ == "__main__":
    main()
