"""``python -m apps.live_demo [OPTIONS]`` is ``emgstream demo [OPTIONS]``."""

import sys

from emgstream.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]], prog_name="python -m apps.live_demo")
