"""How the package installs: a wheel carries the shipped model, and the live commands run
without torch while the commands that need an extra name it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path


_ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_install_finds_and_loads_the_shipped_model(tmp_path):
    # build from a copy: a build in the checkout would leave build/ and *.egg-info there
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(_ROOT / name, source / name)
    for name in ("emgstream", "apps", "firmware_bridge", "models"):
        shutil.copytree(_ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(source)], check=True, timeout=300)
    (wheel,) = wheels.glob("emgstream-*.whl")
    env_dir = tmp_path / "venv"
    # the dependencies come from this interpreter's site-packages; emgstream from the wheel
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "-q", str(wheel)], check=True, timeout=300)
    code = ("import json, emgstream; from emgstream.pipeline import default_model_path; "
            "from emgstream.modelfile import load_model_file; p = default_model_path(); "
            "print(json.dumps([emgstream.__file__, str(p), len(load_model_file(p).class_names)]))")
    run = tmp_path / "elsewhere"
    run.mkdir()
    out = subprocess.run([str(python), "-c", code], cwd=run, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    package, model, classes = json.loads(out.stdout)
    assert Path(package).is_relative_to(env_dir), package  # the wheel's copy, not the checkout
    assert Path(model).is_relative_to(env_dir) and Path(model).name == "default.emgm"
    assert not Path(model).is_symlink()
    assert classes == 13


_NO_TORCH = """
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    # as if torch were not installed: the live path must never need it
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from click.testing import CliRunner
from emgstream.cli import main

results = {}
for key, args in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(main, args)
    results[key] = [r.exit_code, r.output[-600:]]
results["torch imported"] = [int("torch" in sys.modules), ""]
print(json.dumps(results))
"""


def test_live_commands_run_without_torch_and_others_name_their_extra(tmp_path):
    rec = tmp_path / "r.h5"
    commands = {
        "record": ["record", "sim://?channels=16&rate=2000&realtime=0", "-o", str(rec),
                   "--duration", "2", "--quiet"],
        "play": ["play", str(rec), "--speed", "0", "--name", f"notorch-{tmp_path.name}"],
        "run": ["run", f"replay://{rec}?speed=0", "--no-json"],
        "demo": ["demo", f"replay://{rec}?speed=0", "--headless", "--duration", "1"],
        "run --adapt": ["run", "sim://", "--adapt", "--duration", "1"],
        "calibrate": ["calibrate", "sim://", "--user", "ann"],
        "train": ["train", str(_ROOT / "models" / "default.toml")],
    }
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, json.dumps(commands)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.splitlines()[-1])
    for key in ("record", "play", "run", "demo"):
        assert results[key][0] == 0, (key, results[key][1])
    assert "latency p50" in results["run"][1]
    assert results["torch imported"][0] == 0
    for key, extra in (("run --adapt", "adapt"), ("calibrate", "adapt"), ("train", "train")):
        code, output = results[key]
        assert code != 0 and f"needs torch, which is not installed: pip install " \
            f"'emgstream[{extra}]'" in output, (key, output)
        assert "Traceback" not in output
