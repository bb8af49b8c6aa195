"""``manifest.json``: what a cache holds, from where, and where the next sync starts.

Fields: ``format`` (layout version), ``omsframe_version``, ``schema_version``, ``source_url``
(sanitized: never credentials), ``profile``, ``created``, ``pii_policy``, ``since`` (the
cache holds orders placed, and events made, from then on; ``null``: all), ``widening`` (while
a wider window is read whole: the endpoints still to read), ``probe`` (what the
server honours, per endpoint), ``cursors`` (per endpoint: the ``modified_date`` the next
incremental sync starts from), ``checkpoint`` (per endpoint, while a sync is unfinished: its
plan, filters and the last id it stored), ``counts`` (rows per table) and ``last_sync`` (a
summary of the last sync's report).

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> manifest = load_manifest(root)
    >>> manifest["format"], manifest["cursors"]
    (2, {})
    >>> save_manifest(root, manifest); load_manifest(root)["format"]
    2
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import orjson

from omsframe._version import __version__
from omsframe.atomic import write_atomic
from omsframe.errors import CacheError
from omsframe.schema import SCHEMA_VERSION

#: The layout this omsframe writes. 2: webhook events in files by id range within their month
#: (an omsframe of layout 1 wrote a month's events to ``part.parquet`` alone, and would leave
#: stale copies in the range files); a cache of layout 1 is read and extended as it is, and
#: marked 2 by the first sync that writes to it, so that an older omsframe refuses it.
FORMAT = 2
#: The layouts this omsframe reads and writes to.
FORMATS = (1, 2)
Manifest = dict[str, Any]


def new_manifest() -> Manifest:
    """The manifest of an empty cache."""
    return {
        "format": FORMAT,
        "omsframe_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "source_url": None,
        "profile": None,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pii_policy": None,
        "since": None,
        "probe": {},
        "cursors": {},
        "checkpoint": {},
        "counts": {},
        "last_sync": None,
    }


def manifest_path(root: str | os.PathLike[str]) -> Path:
    """Where the manifest of a cache lives."""
    return Path(root) / "manifest.json"


def load_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Read a cache's manifest (a new one when the cache is empty).

    Raises:
        CacheError: The manifest is not valid JSON or is from an incompatible layout.
    """
    path = manifest_path(root)
    if not path.exists():
        return new_manifest()
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise _damaged(path, "not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise CacheError(f"{path} is not a manifest this omsframe version can read; {_MEND}")
    for key, kinds in _KINDS.items():
        value = manifest.get(key)
        if value is not None and not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise _damaged(path, f"{key!r} is a {type(value).__name__}, not {wanted}")
    if manifest.get("since") is not None and not _is_moment(manifest["since"]):
        raise _damaged(path, "'since' is not a moment")
    for key, valid in _ENTRIES.items():
        bad = [name for name, value in (manifest.get(key) or {}).items() if not valid(value)]
        if bad:
            raise _damaged(path, f"{key}.{bad[0]} is not what a sync left there")
    return {**new_manifest(), **manifest}


#: how to mend a cache whose manifest is damaged or lost: it alone says where the cache came
#: from, its PII policy and its cursors, so no rebuild can make it again
_MEND = (
    "restore it from a backup, or move the cache folder away and sync anew (the manifest "
    "alone holds the cache's source, PII policy and cursors)"
)


def _damaged(path: Path, what: str) -> CacheError:
    """The error for a damaged manifest: what is wrong, and how to mend it."""
    return CacheError(f"{path} is damaged ({what}); {_MEND}")


def lost_manifest(root: str | os.PathLike[str]) -> CacheError | None:
    """The error for a cache with tables but no manifest (lost), or ``None``.

    A sync writes the manifest before its first table, so tables without one mean it was
    lost: where they came from and under which PII policy is not known any more, and a sync
    from another OMS, or with another policy, would mix into them unseen.
    """
    if manifest_path(root).exists() or not (Path(root) / "tables").is_dir():
        return None
    return CacheError(f"cache {root} has tables but no manifest.json (lost); {_MEND}")


def _is_moment(value: Any) -> bool:
    try:
        dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


#: what each entry of the manifest's mappings must be
_ENTRIES: dict[str, Any] = {
    "cursors": lambda value: value is None or _is_moment(value),
    "checkpoint": lambda value: value is None or isinstance(value, dict),
    "probe": lambda value: value is None or isinstance(value, dict),
}
#: the types of the manifest's fields (a field may also be null)
_KINDS: dict[str, tuple[type, ...]] = {
    "omsframe_version": (str,),
    "schema_version": (int,),
    "source_url": (str,),
    "profile": (str,),
    "created": (str,),
    "pii_policy": (str,),
    "since": (str,),
    "widening": (list,),
    "probe": (dict,),
    "cursors": (dict,),
    "checkpoint": (dict,),
    "counts": (dict,),
    "last_sync": (dict,),
}


def save_manifest(root: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write the manifest atomically."""
    manifest = {**manifest, "format": FORMAT, "omsframe_version": __version__}
    write_atomic(manifest_path(root), orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
