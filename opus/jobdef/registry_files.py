"""The registry's files on disk: proposal metadata, kept versions' dates, atomic JSON writes, and who
proposed what (opus.jobdef.registry)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_proposer(meta: dict[str, Any], name: str | None, owner_key: str | None) -> bool:
    """Whether the caller (``name``, ``owner_key``) is the proposer recorded in ``meta``: by account id
    when the proposal has one (a later user of the same name is another account), else by name."""
    if meta.get("proposer_key") is not None:
        return owner_key is not None and meta["proposer_key"] == owner_key
    return name is not None and meta.get("proposer") == name
