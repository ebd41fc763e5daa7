"""Where log lines go when the command line runs: through tqdm (a warning never breaks a
progress bar), and liblsl's own lines only when asked for (-v)."""

from __future__ import annotations

import atexit
import configparser
import logging
import os
import sys
import tempfile
from pathlib import Path

#: liblsl's levels: -2 errors only; 0 adds its information lines (loguru's verbosity)
_LIBLSL_QUIET = "-2"


class TqdmHandler(logging.Handler):
    """Writes each record with ``tqdm.write``, which clears the bars, prints, redraws them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging's contract: never raise from emit)
            self.handleError(record)


def setup(verbose: int) -> None:
    """Log at WARNING (INFO with -v, DEBUG with -vv) through tqdm; quiet liblsl unless -v."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if verbose == 0:
        _quiet_liblsl()


def _liblsl_config() -> Path | None:
    """The configuration file liblsl would read, in its own order of search."""
    if os.environ.get("LSLAPICFG"):
        return Path(os.environ["LSLAPICFG"])
    for candidate in (Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg",
                      Path("/etc/lsl_api/lsl_api.cfg")):
        if candidate.is_file():
            return candidate
    return None


def _quiet_liblsl() -> None:
    """Point liblsl (here and in the child processes, through ``LSLAPICFG``) at a copy of the
    configuration it would have read, with its log level at errors unless that configuration
    sets one: its information lines ("Loaded default config", its build) are noise on a
    terminal. A configuration that cannot be read is left to liblsl."""
    source = _liblsl_config()
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # liblsl's keys are case-sensitive (ResolveScope)
    try:
        if source is not None:
            config.read_string(source.read_text())
    except (OSError, UnicodeDecodeError, configparser.Error):
        return
    if config.has_option("log", "level"):
        return
    if not config.has_section("log"):
        config.add_section("log")
    config.set("log", "level", _LIBLSL_QUIET)
    fd, path = tempfile.mkstemp(prefix="emgstream-lsl-", suffix=".cfg")
    with os.fdopen(fd, "w") as out:
        config.write(out)
    atexit.register(os.remove, path)
    os.environ["LSLAPICFG"] = path
