"""Quiet by default: liblsl's information lines and Qt's plugin messages reach the terminal
only with -v, and log lines do not break a progress bar."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from emgstream.io import RecordingWriter
from emgstream.sources import StreamInfo


def _emgstream(*args, home, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}  # liblsl's own defaults
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "emgstream", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=home)


def test_liblsl_info_lines_only_with_verbose(tmp_path, unique_id):
    path = tmp_path / "r.h5"
    with RecordingWriter(path, StreamInfo("r", 2, 200.0)) as w:
        w.append(np.zeros((100, 2), np.float32), np.arange(100) / 200.0)
    quiet = _emgstream("play", path, "--speed", "0", "--name", unique_id, home=tmp_path)
    loud = _emgstream("-v", "play", path, "--speed", "0", "--name", unique_id, home=tmp_path)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "INFO|" not in quiet.stderr and "played 100 samples" in quiet.stderr
    assert "INFO|" in loud.stderr  # liblsl's, e.g. "Loaded default config"
    assert not list(tmp_path.glob("emgstream-lsl-*"))  # the quiet configuration is removed


@pytest.mark.gui
def test_qt_plugin_messages_only_with_verbose(tmp_path):
    pytest.importorskip("PyQt6", reason="the window needs the gui extra")
    quiet = _emgstream("demo", "--duration", "2", home=tmp_path)
    loud = _emgstream("-v", "demo", "--duration", "2", home=tmp_path)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "qt INFO: This plugin does not support" in loud.stderr
    assert "This plugin" not in quiet.stderr


def test_a_warning_during_a_progress_bar_gets_its_own_line(capsys):
    from tqdm import tqdm

    from emgstream.cli._logs import TqdmHandler

    logger = logging.getLogger("emgstream.test-quiet")
    handler = TqdmHandler()
    logger.addHandler(handler)
    try:
        with tqdm(total=10, file=sys.stderr, desc="bar", ascii=True) as bar:
            bar.update(3)
            logger.warning("the source dropped 7 samples")
            bar.update(3)
    finally:
        logger.removeHandler(handler)
    # what a terminal shows of each line: the text after its last carriage return
    shown = [line.split("\r")[-1] for line in capsys.readouterr().err.split("\n")]
    # tqdm.write cleared the bar first: the warning stands on a line of its own
    assert "the source dropped 7 samples" in shown
