"""Run files on disk: JSON text of a run (one request a line), the atomic write every output goes through,
and reading a document with one-line errors naming the file (docs/architecture.md, "Where each thing
lives"). Never imports torch."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from llmprof.errors import RunFormatError
from llmprof.runfile.model import Run

T = TypeVar("T")


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a truncated file. A symlink is
    followed (its target is replaced); a target that is not a regular file (a pipe, /dev/stdout) is written
    directly. The file gets the usual permissions (0666 less the umask), not the temporary file's 0600."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        regular = True  # a new file
    if not regular:  # a pipe, a terminal, /dev/stdout: streamed (its real path is no place for a rename)
        with open(path, "wb") as f:
            f.write(payload)
        return
    target = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_run(run: Run, compact: bool = True) -> str:
    """``run`` as JSON text: ``compact``, its marks encoded and one request a line (the run file); else
    plain arrays, indented (``report --format json``)."""
    if not compact:
        return json.dumps(run.to_dict(), indent=1) + "\n"
    return dump_lines(run.to_dict(compact=True))


def dump_lines(document: dict[str, Any]) -> str:
    """``document`` as JSON text with one top-level field a line, and one item a line in its lists of
    objects (the requests): a big file stays readable with ``less`` and ``grep``."""
    lines = []
    for key, value in document.items():
        name = json.dumps(key)
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            items = ",\n".join(json.dumps(item, separators=(",", ":")) for item in value)
            lines.append(f"{name}: [\n{items}\n]")
        else:
            lines.append(f"{name}: {json.dumps(value, separators=(',', ':'))}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save_run(run: Run, path: str | os.PathLike[str]) -> None:
    """Save ``run`` as JSON at ``path``, atomically."""
    write_atomic(path, dump_run(run))


def read_document(path: str | os.PathLike[str]) -> Any:
    """The JSON document at ``path`` (a run or a sweep); raises RunFormatError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_constant=_no_constant)
    except FileNotFoundError as exc:
        raise RunFormatError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise RunFormatError(f"{path}: is a directory") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise RunFormatError(f"{path}: not valid JSON (truncated?): {exc}") from exc
    except RecursionError:
        raise RunFormatError(f"{path}: nested too deeply to be an llmprof run") from None


def load_with(path: str | os.PathLike[str], build: Callable[[Any], T]) -> T:
    """``build`` of the document at ``path``; raises RunFormatError with a one-line reason naming the file."""
    data = read_document(path)
    try:
        return build(data)
    except RunFormatError as exc:
        raise RunFormatError(f"{path}: {exc}") from None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run saved by :func:`save_run`; raises RunFormatError with a one-line reason."""
    return load_with(path, Run.from_dict)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON has")
