"""The SLURM resources a job may ask for, and their checks (an allow-list: never pasted raw).

A job definition gives defaults (``"slurm": {"partition": "debug", "mem": "2G"}``); a job may
override them with control parameters ``slurm_<option>`` (names case-insensitive; ``-`` and ``_``
alike, so the original OPUS's ``slurm_ntasks-per-node`` is ``ntasks_per_node``).  Memory takes
SLURM's units with an optional ``B``, as the original did: ``500M``, ``4G``, ``1gb``, ``2048`` (MB).
"""

from __future__ import annotations

import re

from opus.errors import BadRequest
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z")
_MEM = re.compile(r"^([1-9][0-9]{0,9})(?:([KMGT])B?)?\Z")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("letters, digits, '_', '.', '-' (at most 64)")
    return value


def _count(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 100000:
        raise ValueError("a whole number from 1 to 100000")
    return str(int(value))


def _mem(value: str) -> str:
    found = _MEM.match(value.upper())
    if not found:
        raise ValueError("a size such as 500M, 4G, 1gb or 1024 (megabytes)")
    return found.group(1) + (found.group(2) or "")


#: option -> (sbatch flag, check)
OPTIONS = {
    "partition": ("--partition", _name),
    "account": ("--account", _name),
    "qos": ("--qos", _name),
    "nodes": ("--nodes", _count),
    "ntasks": ("--ntasks", _count),
    "cpus_per_task": ("--cpus-per-task", _count),
    "ntasks_per_node": ("--ntasks-per-node", _count),
    "mem": ("--mem", _mem),
}
PREFIX = "slurm_"


def is_slurm_parameter(name: str) -> bool:
    return name.lower().startswith(PREFIX)


def canonical(option: str) -> str:
    """The key of ``OPTIONS`` an option name means (``ntasks-per-node`` -> ``ntasks_per_node``)."""
    return option.strip().lower().replace("-", "_")


def check_option(option: str, value: str, where: str) -> str:
    """The normalised value of one option, or BadRequest naming it and what is allowed."""
    option = canonical(option)
    if option not in OPTIONS:
        raise BadRequest(f"{where}: unknown SLURM option; allowed: "
                         + ", ".join(PREFIX + o for o in OPTIONS))
    try:
        return OPTIONS[option][1](str(value).strip())
    except ValueError as exc:
        raise BadRequest(f"{where}: {value!r} is not valid: {exc}") from None


def sbatch_flags(options: dict[str, str]) -> list[str]:
    """``--flag=value`` arguments for checked options, in a stable order (names in any spelling)."""
    by_key = {canonical(name): value for name, value in options.items()}
    return [f"{OPTIONS[o][0]}={by_key[o]}" for o in OPTIONS if by_key.get(o)]
