"""Install the pinned peers, DBOS and Prefect, each into a venv of its own.

    python benchmarks/setup_peers.py [--dir DIR] [--only dbos,prefect] [--force]

Each peer gets `DIR/<peer>` (default: $CLOACA_PEERS_DIR, else ~/.cache/cloaca/peers), with
the version pinned in peers.py and this environment's aiosqlite and anyio (for the baseline
measured in the peer's process). peers.py and run_all.py find these venvs by themselves.
The peers never touch the project's own environment, nor each other's dependencies.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from importlib.metadata import PackageNotFoundError, version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from peers import PEERS, PINS, peer_python, peers_dir  # noqa: E402


def shared_pins() -> list[str]:
    """aiosqlite and anyio at this environment's versions, so the peers' baseline is ours."""
    pins = []
    for name in ("aiosqlite", "anyio"):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def install(peer: str, directory: str, force: bool) -> None:
    python = peer_python(peer, directory)
    if force or not os.path.exists(python):
        print(f"{peer}: creating {os.path.dirname(os.path.dirname(python))}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=force).create(os.path.join(directory, peer))
    requirements = [PINS[peer], *shared_pins()]
    print(f"{peer}: pip install {' '.join(requirements)}", flush=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *requirements], check=True)
    check = f"import {peer}; from importlib.metadata import version; print('{peer}', version('{peer}'), 'ok')"
    subprocess.run([python, "-c", check], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=peers_dir(), help="where the venvs go (default: %(default)s)")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(PEERS))
    parser.add_argument("--force", action="store_true", help="recreate the venvs from scratch")
    args = parser.parse_args()
    for peer in PEERS:
        if not args.only or peer in args.only.split(","):
            install(peer, args.dir, args.force)
    print(f"done: python benchmarks/run_all.py finds the peers in {args.dir}")


if __name__ == "__main__":
    main()
