"""JSON logs: one object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from algoedge import logs


def render(record: logging.LogRecord) -> dict[str, object]:
    return dict(json.loads(logs.JsonFormatter().format(record)))


def make_record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("algoedge.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_should_carry_the_current_request_id() -> None:
    token = logs.request_id.set("req-42")
    try:
        entry = render(make_record("hello"))
    finally:
        logs.request_id.reset(token)
    assert entry["request_id"] == "req-42"
    assert entry["message"] == "hello"
    assert entry["level"] == "INFO"


def test_should_leave_out_the_request_id_outside_a_request() -> None:
    assert "request_id" not in render(make_record("background"))


def test_should_merge_structured_fields_and_keep_one_line() -> None:
    entry_text = logs.JsonFormatter().format(
        make_record("GET /x 200\nsecond line", fields={"status": 200, "ms": 1.5})
    )
    assert "\n" not in entry_text
    entry = json.loads(entry_text)
    assert entry["status"] == 200
    assert entry["ms"] == 1.5


def test_should_include_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "algoedge.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = render(record)
    assert "ValueError: boom" in str(entry["exception"])


def test_should_quiet_per_packet_library_logs_except_at_debug() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("INFO")
        packets = logging.getLogger("engineio.client")
        assert not packets.isEnabledFor(logging.INFO)
        assert packets.isEnabledFor(logging.WARNING)
        assert logging.getLogger("algoedge.bridge").isEnabledFor(logging.INFO)
        logs.configure("DEBUG")
        assert packets.isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in logs.PER_PACKET_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_should_write_the_time_as_datetime_isoformat_does() -> None:
    formatter = logs.JsonFormatter()
    # Whole seconds, rounding at the microsecond (half to even) and across a second, and runs of
    # records in one second (the cached part) and the next.
    instants = [0.0, 1.0009995, 1.9999996, 1_700_000_000.9999999, 1_764_650_000.5]
    instants += [1_764_650_000 + n * 0.000_37 for n in range(6_000)]
    for created in instants:
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        record = make_record("x")
        record.created = created
        assert render_with(formatter, record)["time"] == expected, created


def render_with(formatter: logs.JsonFormatter, record: logging.LogRecord) -> dict[str, object]:
    return dict(json.loads(formatter.format(record)))
