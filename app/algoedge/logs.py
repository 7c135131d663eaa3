"""JSON logs, one object per line, carrying the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Built once: json.dumps(..., default=str) builds an encoder on every call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the API writes one per request, so this is on its hot path."""

    def __init__(self) -> None:
        super().__init__()
        # The "YYYY-MM-DDTHH:MM:SS" of the last whole second formatted: records come many a
        # second, and only the milliseconds change between them.
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``."""
        second = int(created)
        # datetime rounds to the microsecond (half to even), then isoformat truncates.
        micros = round((created - second) * 1_000_000)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


#: Libraries that log a line per packet or per HTTP request at INFO (the MetaAPI SDK's socket.io
#: and Engine.IO clients: every price, status and update packet, with account ids and balances;
#: httpx: every provisioning call and status poll). Their warnings and errors still show; at DEBUG
#: everything does.
PER_PACKET_LOGGERS = ("engineio.client", "socketio.client", "httpx")


def configure(level: str) -> None:
    # What a record would gather and no JSON line shows (the logging HOWTO's "Optimization"):
    # the caller's file and line (a stack walk per record), thread and process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in PER_PACKET_LOGGERS:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
