"""``emgstream demo``: headless JSON lines, and the window opening and closing by itself,
each in a real subprocess (a thread left running would keep it from exiting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emgstream.modelfile import save_model_file

_SIM = "sim://?hold=1.0&rest=0.6"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    pytest.importorskip("torch", reason="needs the adapt extra (torch)")
    from emgstream import train
    from emgstream.sources import open_source

    classes = open_source(_SIM).class_names
    path = tmp_path_factory.mktemp("model") / "test.emgm"
    save_model_file(path, train.make_test_model(classes=classes))
    return path, classes


def _run(code: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_headless_prints_gesture_events_as_json_lines_without_qt(model_path):
    path, classes = model_path
    code = (
        "import sys\n"
        "from emgstream.cli import main\n"
        "try:\n"
        f"    main(['demo', '--headless', '--duration', '3', '--threshold', '0',\n"
        f"          '--source', {_SIM!r}, '--model', {str(path)!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PyQt6', 'pyqtgraph'))\n"
        "print('QT-MODULES', qt, file=sys.stderr)\n")
    result = _run(code, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert events, f"no events printed; stderr:\n{result.stderr}"
    for event in events:
        assert event["gesture"] in classes
        assert 0 <= event["confidence"] <= 1
        assert len(event["probabilities"]) == len(classes)
        assert event["latency_ms"] >= 0
    assert [e["sample_index"] for e in events] == sorted(e["sample_index"] for e in events)
    assert "QT-MODULES []" in result.stderr
    assert "latency p50" in result.stderr  # the stats summary when it stops


def test_demo_help_reads_well():
    result = _run("from emgstream.cli import main; main(['demo', '--help'])", timeout=60)
    assert result.returncode == 0
    assert "demo [OPTIONS] [SOURCE]" in result.stdout
    for option in ("--model", "--headless", "--duration SECONDS"):
        assert option in result.stdout


def test_bad_source_is_a_clear_error(model_path):
    path, _ = model_path
    result = _run("from emgstream.cli import main; "
                  f"main(['demo', 'sim://?channels=8', '--headless', "
                  f"'--model', {str(path)!r}, '--duration', '1'])", timeout=60)
    assert result.returncode != 0
    assert "8 channels" in result.stderr and "16 channels" in result.stderr


@pytest.mark.slow
@pytest.mark.gui
def test_window_opens_shows_events_and_exits_cleanly(model_path):
    pytest.importorskip("PyQt6")
    from dataclasses import replace

    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import personal_model_path

    path, _ = model_path
    # ann has a personalized model of it (EMGSTREAM_HOME is the tests' temporary store)
    personal = personal_model_path("ann", path)
    source = load_model_file(path)
    save_model_file(personal, replace(source, provenance={**source.provenance,
                                                          "personalized_for": "ann"}))
    code = (
        "import logging, sys, threading\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from emgstream.cli import main\n"
        "try:\n"
        f"    main(['demo', {_SIM!r}, '--duration', '6', '--threshold', '0',\n"
        f"          '--model', {str(path)!r}, '--user', 'ann'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('THREADS', [t.name for t in threading.enumerate()], file=sys.stderr)\n")
    result = _run(code, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "THREADS ['MainThread']" in result.stderr
    assert "first gesture on screen" in result.stderr
    assert f"using ann's personalized model {personal}" in result.stderr
