"""The gateway's own short answers (gateway/answers.py): HTML or JSON by the client's Accept, bodies that say
only what they are given, escaped."""

from __future__ import annotations

import dataclasses
import json
from http import HTTPStatus

import pytest

from gateway.answers import (
    BAD_GATEWAY,
    BAD_PATH,
    GATEWAY_TIMEOUT,
    NO_ROUTE,
    TOO_LARGE,
    Answer,
    answer,
    wants_json,
)

THE_GATEWAYS_OWN = [(404, NO_ROUTE), (413, TOO_LARGE), (502, BAD_GATEWAY), (504, GATEWAY_TIMEOUT), (400, BAD_PATH)]


@pytest.mark.parametrize(("accept", "json_first"), [
    (None, False),
    ("", False),
    ("*/*", False),
    ("text/html", False),
    ("application/json", True),
    ("APPLICATION/JSON", True),
    ("application/problem+json", True),
    ("application/json, text/html;q=0.9", True),
    ("text/html,application/xhtml+xml,application/json;q=0.9", False),  # a browser: HTML named first
    ("application/xml, */*", False),
])
def test_json_is_wanted_when_the_accept_names_it_before_html(accept, json_first):
    assert wants_json(accept) is json_first


@pytest.mark.parametrize("requested_with", ["XMLHttpRequest", "xmlhttprequest", "XMLHTTPREQUEST"])
def test_an_xmlhttprequest_wants_json_whatever_its_accept(requested_with):
    assert wants_json("text/html", requested_with) and wants_json(None, requested_with)


@pytest.mark.parametrize("requested_with", ["", "fetch", "XMLHttpRequest2"])
def test_another_requested_with_changes_nothing(requested_with):
    assert not wants_json("text/html", requested_with)
    assert wants_json("application/json", requested_with)


@pytest.mark.parametrize(("status", "detail"), THE_GATEWAYS_OWN)
def test_a_json_answer_names_the_status_and_says_the_detail(status, detail):
    got = answer(status, detail, accept="application/json")
    assert (got.status, got.content_type) == (status, "application/json")
    assert json.loads(got.body) == {"error": HTTPStatus(status).phrase, "status": status, "detail": detail}


@pytest.mark.parametrize(("status", "detail"), THE_GATEWAYS_OWN)
def test_an_html_answer_is_a_whole_page_with_the_status_as_title_and_heading(status, detail):
    got = answer(status, detail, accept="text/html")
    assert (got.status, got.content_type) == (status, "text/html; charset=utf-8")
    page = got.body.decode()
    heading = f"{status} {HTTPStatus(status).phrase}"
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
    assert f"<title>{heading}</title>" in page and f"<h1>{heading}</h1>" in page
    assert f"<p>{detail}</p>" in page and "Session Gateway" in page


def test_no_accept_at_all_gets_html():
    assert answer(404, NO_ROUTE, accept=None).content_type.startswith("text/html")


def test_an_xmlhttprequest_gets_json_though_it_accepts_html():
    got = answer(502, BAD_GATEWAY, accept="text/html", requested_with="XMLHttpRequest")
    assert got.content_type == "application/json" and json.loads(got.body)["status"] == 502


def test_the_detail_is_escaped_in_html():
    got = answer(400, '<script>alert("x")</script> & more', accept="text/html")
    page = got.body.decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page


def test_the_detail_survives_json_whatever_its_characters():
    detail = 'quotes " and \\ backslashes,\nnew lines, </script> and ünïcödé'
    assert json.loads(answer(400, detail, accept="application/json").body)["detail"] == detail


def test_an_answer_cannot_be_changed_once_made():
    got = answer(404, NO_ROUTE, accept=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.status = 200  # type: ignore[misc]
    assert got == Answer(404, got.content_type, got.body)
