"""The optional dependencies (the extras of ``pyproject.toml``): whether one is installed, and
importing one with an error that says what to install."""

from __future__ import annotations

import importlib
import importlib.util

from .exceptions import MissingDependencyError

__all__ = ["OPTIONAL", "check_installed", "install_hint", "is_installed", "require"]

#: import name -> (the package pip installs, the brainzarr extra that brings it)
OPTIONAL = {
    "torch": ("torch", "models"),
    "openTSNE": ("openTSNE", "models"),
    "umap": ("umap-learn", "models"),
    "xgboost": ("xgboost-cpu", "evaluate"),
}


def install_hint(modules, extra: str | None = None) -> str:
    """How to install ``modules`` (one import name or several): their extras, and for torch its
    CPU build first (an unpinned ``pip install torch`` pulls a multi-GB CUDA build)."""
    modules = [modules] if isinstance(modules, str) else list(modules)
    extras = [extra] if extra else list(dict.fromkeys(OPTIONAL[m][1] for m in modules))
    hint = f"pip install 'brainzarr[{','.join(extras)}]'"
    if "torch" in modules:
        if len(modules) == 1:
            return f"pip install torch (the CPU build: pip install torch==2.13.0), or {hint}"
        return f"pip install torch==2.13.0 (PyTorch's CPU build), then {hint}"
    return hint


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_installed(modules, purpose: str, extra: str | None = None, *, error=MissingDependencyError) -> None:
    """Raise ``error`` naming every one of ``modules`` (one import name or several) that is not
    installed, without importing them: a job checks before it starts work that would stop
    there. ``purpose`` names what needs them, e.g. ``"t-SNE"``."""
    modules = [modules] if isinstance(modules, str) else list(modules)
    missing = [m for m in dict.fromkeys(modules) if not is_installed(m)]
    if missing:
        packages = ", ".join(OPTIONAL[m][0] for m in missing)
        raise error(f"{purpose} needs {packages}: {install_hint(missing, extra)}")


def require(module: str, purpose: str, extra: str | None = None):
    """Import ``module``, or raise :class:`MissingDependencyError` saying what to install."""
    check_installed(module, purpose, extra)
    return importlib.import_module(module)
