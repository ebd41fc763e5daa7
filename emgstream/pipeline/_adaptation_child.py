"""Entry point of the adaptation process: ``python -m emgstream.pipeline._adaptation_child FD``.

``FD`` is the child's end of the socket pair the pipeline made; the first message on it is
``("start", model, options, swap_seconds)``. Kept apart from ``_adaptation`` so that running
it does not re-execute a module the package has already imported.
"""

import sys
from multiprocessing.connection import Connection

from emgstream.pipeline._adaptation import _child_main

if __name__ == "__main__":
    conn = Connection(int(sys.argv[1]))
    try:
        _, model, options, swap_seconds = conn.recv()
    except EOFError:
        sys.exit(0)  # the pipeline stopped before we started
    _child_main(conn, model, options, swap_seconds)
