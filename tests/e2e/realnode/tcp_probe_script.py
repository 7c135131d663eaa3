"""Run inside a pod (``python -c`` through ``kubectl exec``): try one TCP connection to each
``host:port`` argument and print one JSON object mapping each to what happened: ``open``,
``refused``, ``unreachable`` (a REJECT rule answers with ICMP), ``timeout`` (a DROP rule), or
``error: ...`` for anything else (a name that does not resolve, for one), which no expectation
accepts.

Usage: python tcp_probe_script.py <host:port>...
"""

from __future__ import annotations

import errno
import json
import socket
import sys


def outcome(host: str, port: int) -> str:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return f"error: {error!r}"
    return "open"


if __name__ == "__main__":
    results = {}
    for target in sys.argv[1:]:
        host, port = target.rsplit(":", 1)
        results[target] = outcome(host, int(port))
    print(json.dumps(results), flush=True)
