"""Run inside a test pod (the app image): GET ``<base>/healthz`` every 50 ms for ``seconds``, a new
connection each time (no keep-alive to outlive a pod), and print one line per failure and a
summary ``OK <n> FAILED <m>``. Prints ``STARTED`` after the first success.

A test that needs the counts at moments of its own signals the process from the host
(:func:`devtools.controlplane.realnode.container_pids`; it is PID 1 of its container, which
takes signals from outside only for a handler it installed): SIGUSR1 prints
``COUNT <ok> <failed>`` at the end of the request under way, SIGTERM ends the run there, with the
summary. The handlers only set flags: printing from a handler could interrupt a print.

Usage: python load_script.py http://<tenant>-api:8080 SECONDS
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.request
from types import FrameType

flags = {"count": False, "stop": False}


def on_signal(signum: int, frame: FrameType | None) -> None:
    flags["stop" if signum == signal.SIGTERM else "count"] = True


def main(base: str, seconds: float) -> None:
    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ok = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not flags["stop"]:
        url = f"{base}/healthz"  # base: the http:// URL the test passes
        request = urllib.request.Request(url, headers={"Connection": "close"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                response.read()
                ok += 1
                if ok == 1:
                    print("STARTED", flush=True)
        except OSError as error:
            failed += 1
            print(f"FAILURE {error!r}", flush=True)
        if flags["count"]:
            flags["count"] = False
            print(f"COUNT {ok} {failed}", flush=True)
        time.sleep(0.05)
    print(f"OK {ok} FAILED {failed}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
