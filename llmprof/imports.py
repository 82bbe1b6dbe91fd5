"""Imports that the user's folder cannot hijack.

A file in the current folder named like an installed package (``kernels.py``, ``transformers.py``) must neither
replace that package for torch or transformers nor hide the user's own ``--patch``/``--loop`` module: the user's
module is looked up in the current folder first, by name, and everything else in site-packages first. An
``ImportError`` that a shadowing file caused is named in one line (:func:`import_failure`).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType

from llmprof.errors import UsageError, first_line


def run_as_main() -> bool:
    """Whether this process is ``python [OPTIONS] -m llmprof ...`` (torchrun's workers included), asked while
    runpy imports the package: ``sys.argv[0]`` is then ``-m`` (a script's argument ``-m llmprof`` is not)."""
    argv = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or "-m" not in argv[:-1]:
        return False
    return argv[argv.index("-m") + 1].partition(".")[0] == "llmprof"


def drop_current_folder() -> None:
    """Remove the current folder that ``python -m`` puts first on ``sys.path``, so that no file of the
    user's folder stands in for a package that torch or transformers imports."""
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", cwd)]


def import_user_module(module_name: str, flag: str) -> ModuleType:
    """Import ``module_name`` (dotted), its top-level module or package from the current folder when it is
    there, else as any import. The folder is appended to ``sys.path`` (after site-packages) so that the module
    can import its siblings. A name already taken by an imported module of another file is an error naming
    both, never a silent import of the wrong module."""
    cwd = os.getcwd()
    top = module_name.partition(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [cwd])
    if spec is not None and spec.origin and top in sys.modules:
        loaded = getattr(sys.modules[top], "__file__", None)
        if loaded and os.path.realpath(loaded) != os.path.realpath(spec.origin):
            raise UsageError(
                f"{flag}: {spec.origin} has the name of the module {top!r} already imported from {loaded}; "
                "rename your file"
            )
    elif spec is not None and top not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[top]
            raise
    if cwd not in sys.path:
        sys.path.append(cwd)
    return importlib.import_module(module_name)


def _installed_roots() -> list[str]:
    paths = sysconfig.get_paths()
    return [os.path.realpath(paths[key]) for key in ("purelib", "platlib", "stdlib") if key in paths]


def _shadowing_files(exc: ImportError) -> list[str]:
    """The files, among those the failed import touched, that stand in for an installed package of their
    name: outside site-packages and the standard library, while a package of that name is installed."""
    roots = _installed_roots()
    import_roots = {os.path.realpath(p or os.getcwd()) for p in sys.path}  # where top-level modules come from
    candidates = [exc.path] if exc.path else []
    loaded = sys.modules.get(
        (exc.name or "").partition(".")[0]
    )  # `No module named 'x.y'; 'x' is not a package`
    candidates += [loaded.__file__] if getattr(loaded, "__file__", None) else []
    candidates += [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
    found: list[str] = []
    for filename in candidates:
        path = Path(filename)
        if not path.is_file() or path.suffix != ".py":
            continue
        real = os.path.realpath(path)
        if any(real.startswith(root + os.sep) for root in roots):
            continue
        top = path.parent if path.name == "__init__.py" else path  # the top-level module or package
        if os.path.realpath(top.parent) not in import_roots:  # a submodule (llmprof/analysis/kernels.py)
            continue
        name = top.stem
        if name == __name__.partition(".")[0]:  # llmprof's own source (an editable install) shadows nothing
            continue
        installed = importlib.machinery.PathFinder.find_spec(name, roots)
        if installed is not None and installed.origin != real and str(path) not in found:
            found.append(str(path))
    return found


def import_failure(exc: ImportError) -> str:
    """One line for an ImportError that reached the CLI, naming a file that shadows an installed package."""
    message = f"{type(exc).__name__}: {first_line(exc, str(exc.name))}"
    shadows = _shadowing_files(exc)
    if not shadows:
        return f"cannot import a library llmprof needs: {message}"
    names = ", ".join(shadows)
    return f"{names} shadows an installed package of its name (rename it): {message}"
