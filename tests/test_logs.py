"""gateway/logs.py: the two formats and their common fields, the request each line is about, what a line never
shows; and the [log] table."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator

import pytest
from pythonjsonlogger.json import JsonFormatter

from conftest import route, settings
from gateway.config import ConfigError
from gateway.logs import (
    MAX_PATH,
    begin,
    current,
    follow,
    formatter,
    handler,
    loggable_path,
    new_request_id,
    setup,
    shorten,
)
from gateway.proxy.headers import MAX_REQUEST_ID, well_formed_request_id
from gateway.reload import changes

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO, list[logging.Handler]]]:
    """A logger of its own, not propagating, whose handlers the test adds (one per format)."""
    logger = logging.getLogger("gateway.test_logs")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    out = io.StringIO()
    added: list[logging.Handler] = []
    yield logger, out, added
    for h in added:
        logger.removeHandler(h)
    logger.propagate = True


def use(lines: tuple[logging.Logger, io.StringIO, list[logging.Handler]], format: str) -> None:
    logger, out, added = lines
    added.append(handler(format, out))
    logger.addHandler(added[-1])


def in_request(action: Callable[[], None], request_id: str = "rid-1", target: str = "/page?code=secret-code") -> None:
    """Run `action` as a request's task does: in a context of its own, with the request begun."""

    async def task() -> None:
        entry = begin(request_id, "192.0.2.7", "POST", target)
        entry.route = "hr"
        action()

    asyncio.run(task())


def test_a_json_line_has_the_common_fields_and_those_of_its_request(lines):
    use(lines, "json")
    logger, out, _ = lines
    in_request(lambda: logger.warning("route %s: upstream failed", "hr"))
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert ISO_UTC.fullmatch(line.pop("time"))
    assert line == {"level": "WARNING", "logger": "gateway.test_logs", "message": "route hr: upstream failed",
                    "request_id": "rid-1", "client": "192.0.2.7", "method": "POST", "path": "/page",
                    "route": "hr"}


def test_outside_a_request_a_json_line_has_only_the_common_fields_and_its_own(lines):
    use(lines, "json")
    logger, out, _ = lines
    logger.info("started", extra={"event": "start", "routes": [{"name": "hr"}]})
    line = json.loads(out.getvalue())
    assert set(line) == {"time", "level", "logger", "message", "event", "routes"}
    assert line["routes"] == [{"name": "hr"}] and line["event"] == "start"


def test_a_field_the_caller_gives_wins_over_the_request_s(lines):
    use(lines, "json")
    logger, out, _ = lines
    in_request(lambda: logger.info("policy switched", extra={"route": "other"}))
    assert json.loads(out.getvalue())["route"] == "other"


def test_a_text_line_reads_as_a_sentence_with_the_request_id_in_brackets(lines):
    use(lines, "text")
    logger, out, _ = lines
    logger.info("outside")
    in_request(lambda: logger.error("inside %d", 1, extra={"event": "x"}))
    first, second = out.getvalue().splitlines()
    stamp, rest = first.split(" ", 1)
    assert ISO_UTC.fullmatch(stamp) and rest == "INFO gateway.test_logs [-] outside"
    assert second.split(" ", 1)[1] == "ERROR gateway.test_logs [rid-1] inside 1"


def test_an_exception_stays_inside_one_json_line(lines):
    use(lines, "json")
    logger, out, _ = lines
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed")
    [text] = out.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(text)["exc_info"]


def test_the_request_does_not_leak_into_the_next_task():
    seen: list[object] = []

    async def both() -> None:
        async def first() -> None:
            begin("rid-a", "-", "GET", "/")

        await asyncio.get_running_loop().create_task(first())
        seen.append(current.get())

    asyncio.run(both())
    assert seen == [None]


def test_setup_replaces_the_handlers_of_the_root_logger():
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    gathered = logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    try:
        out = io.StringIO()
        setup("warning", "json", io.StringIO())
        setup("debug", "json", out)
        assert len(root.handlers) == 1 and root.level == logging.DEBUG
        logging.getLogger("gateway.x").debug("once")
        assert [json.loads(t)["message"] for t in out.getvalue().splitlines()] == ["once"]
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in before:
            root.addHandler(h)
        root.setLevel(level)
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = gathered


def test_a_reload_changes_the_level_and_the_format_of_the_gateway_s_handler_only():
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    ours, theirs = handler("json", io.StringIO()), logging.StreamHandler(io.StringIO())
    try:
        root.addHandler(ours)
        root.addHandler(theirs)
        follow("debug", "text")
        assert root.level == logging.DEBUG
        assert not isinstance(ours.formatter, JsonFormatter) and theirs.formatter is None
        follow("info", "json")
        assert isinstance(ours.formatter, JsonFormatter) and root.level == logging.INFO
    finally:
        root.removeHandler(ours)
        root.removeHandler(theirs)
        root.setLevel(level)
    assert root.handlers == before


def test_a_reload_names_a_new_log_format():
    old = settings(route("http://127.0.0.1:9"))
    new = settings(route("http://127.0.0.1:9"), log={"format": "json"})
    assert "log format text -> json" in changes(old, new).other


def test_times_are_utc():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = 0.0, 5.0
    assert formatter("text").formatTime(record) == "1970-01-01T00:00:00.005Z"


@pytest.mark.parametrize(("target", "logged"), [
    ("/acs?SAMLResponse=PHNhbWw+&RelayState=abc", "/acs"),
    ("/callback?code=xyz#frag", "/callback"),
    ("/app;jsessionid=ABC123/page;v=1?x", "/app/page"),
    ("/plain/path", "/plain/path"),
])
def test_a_path_is_logged_without_query_or_path_parameters(target, logged):
    assert loggable_path(target) == logged


def test_a_long_path_is_cut():
    assert loggable_path("/" + "a" * 20_000) == "/" + "a" * (MAX_PATH - 1) + "…"


def test_a_session_id_is_shortened_as_on_the_status_page():
    assert shorten("102abcdefghijklmnopqrstuvw") == "102abc…" and shorten(None) is None


def test_made_request_ids_are_distinct_and_well_formed():
    made = {new_request_id() for _ in range(10_000)}
    assert len(made) == 10_000 and all(re.fullmatch(r"[0-9a-f]{16}", r) and well_formed_request_id(r) for r in made)


def test_a_forked_worker_makes_request_ids_of_its_own_not_the_rest_of_its_parents():
    """The ids come from random bytes read ahead: a child forked with some of them unread must not repeat them."""
    new_request_id()  # the parent has read ahead
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        os.write(writing, " ".join(new_request_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        childs = set(pipe.read().split())
    os.waitpid(child, 0)
    parents = {new_request_id() for _ in range(20)}
    assert len(childs) == 20 and not childs & parents


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "caf\u00e9", "a b", "a\tb", "\x00", "", "\x7f",
                                   "x" * (MAX_REQUEST_ID + 1), "x" * 10_240])
def test_a_request_id_that_could_inject_or_flood_is_not_well_formed(value):
    assert not well_formed_request_id(value)


@pytest.mark.parametrize("value", ["f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "Root=1-67891233-abcdef",
                                   "x" * MAX_REQUEST_ID])
def test_common_request_ids_are_well_formed(value):
    assert well_formed_request_id(value)


# --- [log] ---------------------------------------------------------------------------------------------------------


def test_the_log_format_is_text_unless_the_configuration_says_json():
    assert settings(route("http://127.0.0.1:9")).log.format == "text"
    assert settings(route("http://127.0.0.1:9"), log={"format": "json"}).log.format == "json"


@pytest.mark.parametrize(("table", "message"), [
    ({"format": "xml"}, 'test.toml: log.format: expected "text" or "json"'),
    ({"format": 1}, 'test.toml: log.format: expected "text" or "json"'),
    ({"fromat": "json"}, "did you mean 'format'?"),
])
def test_a_bad_log_table_is_one_clear_error(table, message):
    with pytest.raises(ConfigError) as raised:
        settings(route("http://127.0.0.1:9"), log=table)
    assert message in str(raised.value)
