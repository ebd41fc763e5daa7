"""The optional parts of the install (``pyproject.toml`` extras) and what to say when one is
missing: the live path (``demo``, ``run``, ``record``, ``play``) needs none of them."""

from __future__ import annotations

import importlib.util

#: module -> the extra that installs it
EXTRA_OF = {"torch": "adapt", "sklearn": "adapt", "onnxscript": "train", "PyQt6": "gui",
            "pyqtgraph": "gui"}


def missing_extra(modules: str | tuple[str, ...], what: str,
                  extra: str | None = None) -> str | None:
    """None when every one of ``modules`` can be imported; else one line saying that
    ``what`` needs the first missing one and which extra installs it (``extra``, or the
    module's own). Specs are looked up; nothing is imported."""
    for module in (modules,) if isinstance(modules, str) else modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package, or the module, cannot load
            found = False
        if not found:
            return (f"{what} needs {module}, which is not installed: pip install "
                    f"'emgstream[{extra or EXTRA_OF[module]}]'")
    return None
