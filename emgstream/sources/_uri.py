"""URI parsing and lazy dispatch to the source modules (so ``import emgstream.sources``
does not import pylsl, pyserial or h5py)."""

from __future__ import annotations

import importlib
from urllib.parse import parse_qsl, unquote, urlsplit

from ._base import Source

# scheme -> "module:Class"; each class has ``from_uri(target: str, params: dict[str, str])``
_SCHEMES = {
    "lsl": "emgstream.sources.lsl:LSLSource",
    "serial": "emgstream.sources.serial:SerialSource",
    "replay": "emgstream.sources.replay:ReplaySource",
    "sim": "emgstream.sources.sim:SimSource",
}


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """Split ``scheme://target?key=value&...`` into ``(scheme, target, params)``.

    For ``lsl://name=EMG`` the target is ``name=EMG`` (an LSL predicate);
    for ``serial:///dev/ttyUSB0`` and ``replay://rec.h5`` it is the path.
    """
    if "://" not in uri:
        raise ValueError(
            f"source URI {uri!r} has no scheme; expected one of "
            f"{', '.join(s + '://' for s in _SCHEMES)}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown source scheme {scheme!r} in {uri!r}; expected one of "
                         f"{sorted(_SCHEMES)}")
    target = unquote(parts.netloc + parts.path)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return scheme, target, params


def open_source(uri: str) -> Source:
    """Create (not yet open) the source a URI names. Use it as a context manager."""
    scheme, target, params = parse_uri(uri)
    module_name, class_name = _SCHEMES[scheme].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.from_uri(target, params)
