"""Where personalized model files are kept, so that a user's next session starts from them.

One file per user and source model: ``<home>/users/<user>/<source stem>-<digest>.emgm``,
where ``<home>`` is ``$EMGSTREAM_HOME`` or the platform's user data folder for emgstream
(``~/.local/share/emgstream`` on Linux) and ``<digest>`` is the first 12 hex digits of the
source model file's SHA-256. The digest keys the personalization to the exact model it was
adapted from: after a retrained or different source model, an old personalization is not
picked up (its weights belong to the other model).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CHUNK = 1 << 20


def users_folder() -> Path:
    """The folder that holds one sub-folder of personalized models per user."""
    home = os.environ.get("EMGSTREAM_HOME")
    if not home:
        import platformdirs

        home = platformdirs.user_data_dir("emgstream", appauthor=False)
    return Path(home) / "users"


def personal_model_path(user: str, source_model: str | Path) -> Path:
    """The file that holds ``user``'s personalization of the model file ``source_model``.

    The path is returned whether or not the file exists yet: ``emgstream calibrate``,
    ``run --adapt`` and the demo window write it, and ``run``/``demo --user`` use it when it
    is there. ``user`` names a folder, so it must be 1-64 letters, digits, ``_``, ``.`` or
    ``-``, starting with a letter or digit.
    """
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise ValueError(f"user name {user!r} cannot name a folder: use 1-64 letters, digits, "
                         "'_', '.' or '-', starting with a letter or digit")
    source = Path(source_model)
    digest = hashlib.sha256()
    with open(source, "rb") as f:  # an absent source model raises FileNotFoundError
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return users_folder() / user / f"{source.stem}-{digest.hexdigest()[:12]}.emgm"
