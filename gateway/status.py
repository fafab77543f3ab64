"""The operator's status page: what the gateway is doing, as data and as server-rendered HTML.

Rules of this module:
- Pure: `status_data()` turns plain values (routes with their configured and current policies and the override
  that made the current one: who switched it, when, from what; counter values, recent revocations) into one
  JSON-ready dict; `status_html()` renders that same dict. No aiohttp, no I/O.
- The page reads well without JavaScript or CSS frameworks: tables, a form per route, one small style block.
- Nothing secret appears: session ids are shortened, no token, key or cookie value is ever shown.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .logs import shorten

MODES = ("enforce", "observe", "off")


@dataclass(frozen=True, slots=True)
class RouteView:
    name: str
    host: str
    path: str
    upstream: str
    profile: str | None
    configured: str
    current: str
    switched_by: str | None = None  # the override that makes `current`, when there is one: who, when, from what
    switched_at: float | None = None
    switched_from: str | None = None


@dataclass(frozen=True, slots=True)
class RevocationView:
    source: str
    reason: str
    session_id: str | None
    user_id: str | None
    login: str | None
    happened_at: float | None
    acted_at: float


def status_data(routes: Iterable[RouteView], counters: Mapping[str, Any],
                revocations: Iterable[RevocationView]) -> dict[str, Any]:
    return {
        "routes": [{"name": r.name, "host": r.host, "path": r.path, "upstream": r.upstream, "profile": r.profile,
                    "configured_policy": r.configured, "policy": r.current, "policy_switch": _switch(r)}
                   for r in routes],
        "counters": dict(counters),
        "revocations": [_revocation(r) for r in revocations],
    }


def _switch(r: RouteView) -> dict[str, Any] | None:
    if r.switched_at is None:
        return None
    return {"by": r.switched_by, "at": _iso(r.switched_at), "from": r.switched_from}


def _revocation(r: RevocationView) -> dict[str, Any]:
    latency = None if r.happened_at is None else round(max(r.acted_at - r.happened_at, 0.0) * 1000, 1)
    return {"source": r.source, "reason": r.reason, "session": shorten(r.session_id), "user_id": r.user_id,
            "login": r.login, "happened_at": _iso(r.happened_at), "acted_at": _iso(r.acted_at),
            "latency_ms": latency}


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def status_html(data: Mapping[str, Any], *, prefix: str, csrf: str, notice: str = "") -> str:
    e = html.escape
    rows = "".join(_route_row(r, prefix, csrf) for r in data["routes"])
    counters = "".join(f"<tr><th>{e(k.replace('_', ' '))}</th><td>{e(_show(v))}</td></tr>"
                       for k, v in data["counters"].items())
    revocations = "".join(
        f"<tr><td>{e(r['acted_at'] or '')}</td><td>{e(r['source'])}</td><td>{e(r['reason'])}</td>"
        f"<td>{e(r['login'] or r['user_id'] or '')}</td><td>{e(r['session'] or 'all of the user')}</td>"
        f"<td>{'' if r['latency_ms'] is None else e(str(r['latency_ms'])) + ' ms'}</td></tr>"
        for r in data["revocations"]) or '<tr><td colspan="6">None yet.</td></tr>'
    banner = f'<p class="notice">{e(notice)}</p>' if notice else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Session Gateway status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1d2330; max-width: 72rem; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #dde1e8; vertical-align: top; }}
th {{ background: #f4f6f9; }} .notice {{ background: #e8f4ea; padding: .5rem .8rem; }}
.changed {{ color: #a33a00; font-weight: 600; }} form {{ display: inline; }}
</style></head>
<body><h1>Session Gateway</h1>{banner}
<h2>Routes</h2>
<table><tr><th>Route</th><th>Host</th><th>Path</th><th>Upstream</th><th>App profile</th><th>Configured</th>
<th>Policy now</th><th>Switch</th></tr>{rows}</table>
<h2>Counters</h2><table>{counters}</table>
<h2>Last revocations</h2>
<table><tr><th>When</th><th>Source</th><th>Why</th><th>User</th><th>Session</th><th>Latency</th></tr>
{revocations}</table>
<p><a href="{e(prefix)}status.json">The same as JSON</a></p>
</body></html>
"""


def _route_row(r: Mapping[str, Any], prefix: str, csrf: str) -> str:
    e = html.escape
    changed = r["policy"] != r["configured_policy"]
    current = f'<span class="changed">{e(r["policy"])}</span>' if changed else e(r["policy"])
    switch = r.get("policy_switch")
    if switch:
        current += (f'<br><small>switched from {e(switch["from"] or "")} by {e(switch["by"] or "")} at '
                    f'{e(switch["at"] or "")}</small>')
    buttons = "".join(
        f'<button name="mode" value="{m}"{" disabled" if m == r["policy"] else ""}>{m}</button>' for m in MODES)
    if switch:
        buttons += '<button name="mode" value="configured">back to configured</button>'
    form = (f'<form method="post" action="{e(prefix)}admin/routes/{e(r["name"])}/policy">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">{buttons}</form>')
    return (f"<tr><td>{e(r['name'])}</td><td>{e(r['host'])}</td><td>{e(r['path'])}</td><td>{e(r['upstream'])}</td>"
            f"<td>{e(r['profile'] or '')}</td><td>{e(r['configured_policy'])}</td><td>{current}</td>"
            f"<td>{form}</td></tr>")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def login_html(prefix: str, *, failed: bool = False) -> str:
    e = html.escape
    message = '<p class="notice">That token is not the operator token.</p>' if failed else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Session Gateway: operator sign-in</title>
<style>body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem; }}</style></head>
<body><h1>Session Gateway</h1>{message}
<form method="post" action="{e(prefix)}login"><label>Operator token
<input type="password" name="token" autocomplete="current-password" required></label>
<button>Sign in</button></form></body></html>
"""
