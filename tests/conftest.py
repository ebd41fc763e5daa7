"""Shared test set-up.

- LSL resolves on the link-local scope only, so tests never see streams of other machines.
- Qt runs offscreen.
- ``shared_dir`` points at ``../shared`` beside the checkout and skips when it is absent.
- ``EMGSTREAM_HOME`` (where personalized models are kept) is a temporary folder.
- ``watch_reads`` tells whether a file was read, for the untrusted-input tests.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
_LSL_CFG = _ROOT / "tests" / "lsl_api.cfg"
os.environ.setdefault("LSLAPICFG", str(_LSL_CFG))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NUMBA_CACHE_DIR", str(_ROOT / ".numba_cache"))


@pytest.fixture(scope="session", autouse=True)
def _user_store(tmp_path_factory) -> Path:
    """Personalized models that tests save go to a temporary folder, never the user's own."""
    home = tmp_path_factory.mktemp("emgstream-home")
    os.environ["EMGSTREAM_HOME"] = str(home)  # inherited by the subprocesses tests start
    return home


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("EMGSTREAM_SHARED", _ROOT.parent / "shared"))
    if not path.is_dir():
        pytest.skip(f"shared material not found at {path}")
    return path


@pytest.fixture
def unique_id() -> str:
    """A unique LSL source id / stream name for one test."""
    return f"emgstream-test-{uuid.uuid4().hex[:12]}"


class _WatchedFile:
    """A file whose reads show in its access time: armed with an access time older than its
    modification time, which Linux (relatime and strictatime mounts) updates on the next read
    by anyone, C libraries included (ONNX Runtime, HDF5)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.arm()

    def arm(self) -> None:
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
        self._armed = os.stat(self.path).st_atime_ns

    @property
    def was_read(self) -> bool:
        return os.stat(self.path).st_atime_ns != self._armed


@pytest.fixture
def watch_reads():
    """``watch_reads(path)`` arms an existing file; ``.was_read`` then says whether anything
    read it since. Skips where the filesystem keeps no access times (noatime)."""

    def watch(path) -> _WatchedFile:
        watched = _WatchedFile(Path(path))
        watched.path.read_bytes()
        if not watched.was_read:
            pytest.skip(f"{path}: this filesystem does not record access times (noatime)")
        watched.arm()
        return watched

    return watch
