"""Scale-out under ``torchrun``: which rank this process is, its device and threads, its shard
of the work, barriers, and a lock that keeps two jobs off one output.

The work is embarrassingly parallel (one text, or one unit of a sweep, at a time), so the ranks
never exchange tensors: each writes its own part files, and rank 0 merges them after a barrier.
The process group is therefore gloo on every device: it is all a barrier needs, it works on
CPU and GPU nodes alike, and it does not bind a rank to a GPU the way an nccl barrier does.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) every function here is a no-op and
no process group is created: the one-process path is the default and pays nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
from pathlib import Path

import torch

from .errors import PrototokensError

log = logging.getLogger(__name__)
_solo = False  # inside alone(): this process acts as if it were the only one


def world_size() -> int:
    """How many processes share the job (1 without torchrun)."""
    return 1 if _solo else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return 0 if _solo else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    """Whether this process is one of several ranks of a torchrun job."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0: the one that merges, reports and prints."""
    return rank() == 0


def job_id() -> str:
    """The job, the same on every rank: torchrun's run id, or this host and process."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return run_id if active() and run_id != "none" else f"{socket.gethostname()}:{os.getpid()}"


def setup(device: str | None = None) -> str | None:
    """Join the job's process group (once) and return the device this rank loads the model on:
    ``cuda:LOCAL_RANK`` when GPUs are present and ``device`` is unset or plain ``cuda``, else
    ``device``. A rank on CPU gets its share of the cores as torch threads. Without torchrun
    this returns ``device`` unchanged and does nothing else."""
    if not active():
        return device
    import torch.distributed as dist

    if not dist.is_initialized():
        seconds = float(os.environ.get("PROTOTOKENS_DIST_TIMEOUT", 7 * 24 * 3600))  # ranks wait for the slowest
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=seconds))
    if device in (None, "cuda") and torch.cuda.is_available():
        device = f"cuda:{local_rank() % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    elif device is None or str(device).startswith("cpu"):
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local_world))
    log.info("rank %d of %d on %s (%d torch threads)", rank(), world_size(), device or "cpu", torch.get_num_threads())
    return device


def barrier() -> None:
    """Wait until every rank gets here (no-op without torchrun)."""
    if active():
        import torch.distributed as dist

        dist.barrier()


def from_main(value):
    """Rank 0's ``value``, on every rank."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: list) -> list:
    """This rank's share of ``items``: item i goes to rank i % world size, the same on every run."""
    return list(items)[rank()::world_size()]


def finish() -> None:
    """Leave the process group (at the end of a command)."""
    if active():
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def alone():
    """Run the body as the only process: for work that rank 0 does by itself while the others wait."""
    global _solo
    was, _solo = _solo, True
    try:
        yield
    finally:
        _solo = was


def lock_path(output: "str | os.PathLike") -> Path:
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextlib.contextmanager
def lock(output: "str | os.PathLike"):
    """Hold ``OUTPUT.lock`` for the body: a second job on the same output is refused.

    Rank 0 creates the file (O_EXCL) naming the job, host and process, and every rank learns
    whether it got it. A lock left by a process that died on this host is taken over; one from
    another host is reported, with the file to remove if that job no longer runs."""
    path = lock_path(output)
    refusal = _acquire(path) if is_main() else None
    refusal = from_main(refusal)
    if refusal:
        if not is_main():
            raise SystemExit(2)  # rank 0 says why, once
        raise PrototokensError(refusal)
    try:
        yield path
    finally:
        if is_main():
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()


def _acquire(path: Path) -> str | None:
    """None once ``path`` is ours; else why not, in one line."""
    mine = {"job": job_id(), "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                held = {}
            if _stale(held, mine):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                log.warning("took over %s from a job that is no longer running (%s)", path, held.get("job"))
                continue
            return (f"{path.with_suffix('') if path.suffix == '.lock' else path} is in use by another job "
                    f"(job {held.get('job', '?')}, host {held.get('host', '?')}, pid {held.get('pid', '?')}, "
                    f"since {held.get('started', '?')}); wait for it to end, or remove {path} if it no longer runs")
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        return None
    return f"could not take the lock {path}; remove it if no job runs on this output"


def _stale(held: dict, mine: dict) -> bool:
    """A lock of a dead process on this host, or of an earlier attempt of this same torchrun job."""
    if not held:
        return False  # being written right now by a live process
    if held.get("job") == mine["job"] and "TORCHELASTIC_RUN_ID" in os.environ and active():
        return True  # torchrun restarted this job's workers
    if held.get("host") != mine["host"] or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
