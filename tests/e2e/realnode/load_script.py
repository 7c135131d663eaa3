"""Run inside a test pod (the app image): GET ``<base>/healthz`` every 50 ms for ``seconds``, a new
connection each time (no keep-alive to outlive a pod), and print one line per failure and a
summary ``OK <n> FAILED <m>``. Prints ``STARTED`` after the first success.

Usage: python load_script.py http://<tenant>-api:8080 SECONDS
"""

from __future__ import annotations

import sys
import time
import urllib.request


def main(base: str, seconds: float) -> None:
    ok = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
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
        time.sleep(0.05)
    print(f"OK {ok} FAILED {failed}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
