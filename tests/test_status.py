"""The status page's data and HTML, from plain values."""

from __future__ import annotations

from gateway.status import RevocationView, RouteView, login_html, shorten, status_data, status_html

ROUTES = [RouteView("hr", "*", "/hr", "http://127.0.0.1:9001", "servlet", "enforce", "observe",
                    switched_by="bearer (<cli> of ops)", switched_at=1_000_000.0, switched_from="enforce"),
          RouteView("wiki<script>", "*", "/wiki", "http://127.0.0.1:9002", None, "off", "off")]
REVOCATIONS = [RevocationView("event_hook", "user_suspended", None, "00u0abcdefGHIJKLMNOP", "a@example.com",
                              1_000_000.0, 1_000_000.25),
               RevocationView("lookup", "okta_session_ended", "idxffK-esRDSrC5m0ly-Kma9A", None, None, None,
                              1_000_001.0)]


def data() -> dict:
    return status_data(ROUTES, {"requests": 12345, "cache_hit_ratio": 0.9876}, REVOCATIONS)


def test_the_data_names_configured_and_current_policies_and_shortens_session_ids():
    d = data()
    assert d["routes"][0] == {"name": "hr", "host": "*", "path": "/hr", "upstream": "http://127.0.0.1:9001",
                                  "profile": "servlet", "configured_policy": "enforce", "policy": "observe",
                                  "policy_switch": {"by": "bearer (<cli> of ops)", "at": "1970-01-12T13:46:40Z",
                                                    "from": "enforce"}}
    assert d["routes"][1]["policy_switch"] is None  # the configured policy: nobody switched it
    assert d["revocations"][0]["latency_ms"] == 250.0 and d["revocations"][0]["session"] is None
    assert d["revocations"][1]["session"] == "idxffK…" and d["revocations"][1]["latency_ms"] is None
    assert "idxffK-esRDSrC5m0ly-Kma9A" not in str(d)
    assert shorten(None) is None


def test_the_page_shows_a_switched_policy_and_escapes_what_it_shows():
    page = status_html(data(), prefix="/.gateway/", csrf="tok", notice="done <b>")
    assert '<span class="changed">observe</span>' in page
    assert "wiki&lt;script&gt;" in page and "<script>" not in page
    assert "done &lt;b&gt;" in page
    assert 'action="/.gateway/admin/routes/hr/policy"' in page and 'name="csrf" value="tok"' in page
    assert '<button name="mode" value="observe" disabled>' in page  # the current one cannot be chosen again
    assert "12,345" in page and "0.988" in page


def test_the_page_without_revocations_says_so():
    page = status_html(status_data(ROUTES, {}, []), prefix="/.gateway/", csrf="t")
    assert "None yet." in page


def test_the_sign_in_page_posts_the_token_and_says_when_it_was_wrong():
    assert 'action="/.gateway/login"' in login_html("/.gateway/")
    assert "not the operator token" in login_html("/.gateway/", failed=True)


def test_the_page_says_who_switched_a_policy_and_when_and_offers_to_return_to_the_configured_one():
    page = status_html(data(), prefix="/.gateway/", csrf="tok")
    hr, wiki = page.split("<tr><td>hr</td>")[1].split("</tr>")[0], page.split("<tr><td>wiki")[1].split("</tr>")[0]
    assert "switched from enforce by bearer (&lt;cli&gt; of ops) at 1970-01-12T13:46:40Z" in hr
    assert '<button name="mode" value="configured">back to configured</button>' in hr
    assert "switched" not in wiki and 'value="configured"' not in wiki
