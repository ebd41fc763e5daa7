"""DESIGN.md's import rules, checked in fresh interpreters.

Acquisition, DSP, IO, the synthesizer and the firmware bridge never import torch or Qt, the
CLI's --help imports neither, so recording and ``emgstream --help`` stay light and fast.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_LIGHT_MODULES = [
    "emgstream.sources", "emgstream.sources.lsl", "emgstream.sources.serial",
    "emgstream.sources.replay", "emgstream.sources.sim", "emgstream.sources.markers",
    "emgstream.dsp", "emgstream.io", "emgstream.io.recording", "emgstream.io.xdf",
    "emgstream.io.datasets", "emgstream.io.threedc",
    "emgstream.synth", "emgstream.modelfile", "firmware_bridge", "firmware_bridge.codec",
]


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", _LIGHT_MODULES)
def test_light_module_imports_no_torch_or_qt(module):
    pytest.importorskip(module)
    mods = _imported_after(f"import {module}")
    heavy = {m for m in mods if m.split(".")[0] in {"torch", "PyQt6", "pyqtgraph"}}
    assert not heavy, f"{module} imports {sorted(heavy)[:5]}"


def test_cli_help_imports_nothing_heavy():
    mods = _imported_after(
        "from click.testing import CliRunner; from emgstream.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output")
    heavy = {m.split(".")[0] for m in mods} & {"torch", "PyQt6", "pyqtgraph", "onnxruntime",
                                               "h5py", "numba", "pylsl", "serial"}
    assert not heavy, f"emgstream --help imports {sorted(heavy)}"


def test_live_model_loading_checks_the_graph_without_torch():
    """What `emgstream run` does with a model file -- load it, check its graph (onnx), build
    the ONNX Runtime session -- never imports torch."""
    import pathlib
    model = pathlib.Path(__file__).resolve().parents[1] / "models" / "default.emgm"
    mods = _imported_after(
        "from emgstream.modelfile import load_model_file; "
        "from emgstream.pipeline._onnx import _Runner; "
        f"m = load_model_file({str(model)!r}); _Runner(m.onnx, m)")
    assert {"onnx", "onnxruntime"} <= mods, "the graph check or the session did not run"
    heavy = {m for m in mods if m.split(".")[0] in {"torch", "PyQt6", "pyqtgraph"}}
    assert not heavy, f"loading a model for the live path imports {sorted(heavy)[:5]}"


def test_library_never_imports_apps_or_cli():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / "emgstream"
    offenders = []
    for path in root.rglob("*.py"):
        if path.parts[-2] == "cli" or path.name == "__main__.py":  # the CLI's own entry points
            continue
        text = path.read_text()
        if "from apps" in text or "import apps" in text or "emgstream.cli" in text:
            offenders.append(str(path.relative_to(root)))
    assert not offenders, f"library modules import apps or the CLI: {offenders}"
