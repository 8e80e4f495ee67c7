# -*- coding: utf-8 -*-
"""Run the ServiceNow simulator (a simulator of the documented API, not a real instance) on 127.0.0.1.

    python tests/support/servicenow_sim --port 8443 --state /tmp/sim.json [--port-file F] [--certfile C --keyfile K]

Prints nothing but errors; writes the port it listens on to ``--port-file`` when given (``--port 0``
picks a free one). Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

if __package__ in (None, ""):
    # run as a directory or a file: make "support.servicenow_sim" importable from tests/
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from support.servicenow_sim.server import Simulator  # noqa: E402
else:
    from .server import Simulator


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", help="JSON file holding the records (kept across restarts)")
    parser.add_argument("--port-file")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args(argv)
    simulator = Simulator(port=args.port, state_path=args.state, certfile=args.certfile, keyfile=args.keyfile)
    if args.port_file:
        temporary = args.port_file + ".tmp"
        with open(temporary, "w") as handle:
            handle.write(str(simulator.port))
        os.replace(temporary, args.port_file)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
