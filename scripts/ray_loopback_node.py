#!/usr/bin/env python3
"""`ray start` for a node that stays on loopback: `ray_loopback_node.py start ...` takes the
same arguments as `ray start`.

Ray rewrites 127.0.0.1 (a `--node-ip-address`, or the head's address a worker node joins) to
the machine's network address, so that other machines could reach it; its one switch against
that (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) refuses to start a second node. On a shared machine
every node of a test cluster must bind loopback, so this keeps 127.0.0.1 as given.
"""

from __future__ import annotations

import sys

from ray._private import services
from ray.scripts.scripts import main

services.resolve_ip_for_localhost = lambda host: host

if __name__ == "__main__":
    sys.exit(main())
