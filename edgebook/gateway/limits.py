"""Resource limits in words a user can act on: which limit stopped a worker (read from its
stderr), and whether a deploy's ``workers`` can fit the worker user's process budget.

The launcher applies each endpoint's ``limit_*`` options (sandbox.py). ``limit_processes``
is RLIMIT_NPROC, which counts every process and thread of the user the workers run as.
Whose budget that is depends on the sandbox: with a uid per endpoint (root's default) it is
the endpoint's own, shared by every gateway process (``--processes N``) and, during a
reload, by the old revision's workers, which run until the new ones are ready; with one
worker user for all (``EDGEBOOK_WORKER_USER``) it is shared by every endpoint of every
gateway on the machine that runs workers as that user.
"""

from __future__ import annotations

import os

from ..sandbox import Limits, Sandbox
from .spec import DeployRejected

#: stderr text -> (the limit's option, what ran out); the launcher's own words first.
SIGNS = (
    ("at its process limit", "limit_processes", "processes"),
    ("setresuid failed: Resource temporarily unavailable", "limit_processes", "processes"),
    ("Resource temporarily unavailable", "limit_processes", "processes or threads"),
    ("Cannot allocate memory", "limit_address_space", "memory (address space)"),
    ("memory allocation of", "limit_address_space", "memory (address space)"),
    ("Too many open files", "limit_open_files", "open files"),
    ("File too large", "limit_file_size", "file size"),
)


def user_tasks(uid: int) -> int:
    """Processes and threads running as ``uid`` now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


def explain_failure(stderr: str, limits: Limits, sandbox: Sandbox | None,
                    endpoint: str = "") -> str | None:
    """Which resource limit ``endpoint``'s worker that would not start ran into, or None."""
    for sign, option, what in SIGNS:
        if sign not in stderr:
            continue
        field = Limits.OPTIONS[option]
        value = getattr(limits, field)
        if option != "limit_processes":
            return (f"the worker ran out of {what}: {option} is {value}; raise it with "
                    f"the endpoint option {option}")
        user = sandbox.user_for(endpoint) if sandbox is not None else None
        if user is None:
            return (f"the worker could not start more {what}: your user is at its "
                    f"process limit ({option} {value}, or ulimit -u)")
        if sandbox is not None and sandbox.user is None:  # the endpoint's own uid
            return (f"the workers of {endpoint} run as uid {user.uid}, which is at its "
                    f"process limit ({option} {value}): it counts every process and thread "
                    f"of this endpoint's workers in every gateway process, and during a "
                    f"reload the old revision's workers too, until the new ones are ready "
                    f"({user_tasks(user.uid)} run now); deploy with fewer workers, or "
                    f"raise {option}")
        return (f"the worker user {user.name or user.uid} is at its process limit "
                f"({option} {value}): that budget is shared by every endpoint of every "
                f"gateway on this machine whose workers run as {user.name or user.uid}, and "
                f"{user_tasks(user.uid)} of its processes and threads run now; stop "
                "endpoints or gateways you do not need ('edgebook gateways'), deploy with "
                f"fewer workers, or raise {option}")
    return None


def check_budget(workers: int, limits: Limits, sandbox: Sandbox | None, endpoint: str = "",
                 *, running: int = 0, processes: int = 1) -> None:
    """Refuse ``workers`` that cannot start under the worker user's process limit.

    ``running``: the workers of ``endpoint``'s serving revision, which keep running beside
    the new ones until those are ready; ``processes``: the gateway processes, each running
    its own workers."""
    if sandbox is None or limits.processes is None:
        return
    if sandbox.user is None:
        own = sandbox.user_for(endpoint)
        needed = processes * (workers + running)
        if own is None or needed <= limits.processes:
            return
        during = (f" while the {running} worker{'s' if running != 1 else ''} of the revision "
                  "it replaces still run" if running else "")
        per = f" in each of {processes} gateway processes" if processes > 1 else ""
        raise DeployRejected(
            400, "over_process_limit",
            f"workers={workers} cannot start: {endpoint}'s workers run as uid {own.uid}, "
            f"which may have at most {limits.processes} processes and threads "
            f"(limit_processes), and this deploy needs {needed}: {workers}{per}{during}; "
            f"deploy with fewer workers or raise limit_processes to at least {needed}")
    user = sandbox.user
    if workers * processes < limits.processes:
        return
    raise DeployRejected(
        400, "over_process_limit",
        f"workers={workers} cannot start: workers run as {user.name or user.uid}, which may "
        f"have at most {limits.processes} processes and threads (limit_processes) across "
        "every endpoint of every gateway on this machine, and each worker needs at least "
        f"one{f', in each of {processes} gateway processes' if processes > 1 else ''}; "
        "deploy with fewer workers or raise limit_processes")
