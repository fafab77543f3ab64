"""A small upstream app that shows what reached it: the built-in target of the demo and of ad-hoc checks.

`/` is a page listing the request as the app saw it, `/echo` the same as JSON, `/ws` a WebSocket echo that
closes with the code the client asks for (`close:4001`).
"""

from __future__ import annotations

import hashlib
import html

from aiohttp import WSMsgType, web


async def page(request: web.Request) -> web.Response:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in request.headers.items()
    )
    body = (
        "<!doctype html><html><head><meta charset=utf-8><title>Upstream app</title></head><body>"
        f"<h1>Upstream app</h1><p>{html.escape(request.method)} <code>{html.escape(request.raw_path)}</code></p>"
        f"<table>{rows}</table></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(2**16):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_size": size,
            "body_sha256": digest.hexdigest(),
        }
    )


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("echo",))
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and msg.data.startswith("close:"):
            await ws.close(code=int(msg.data[6:]), message=b"asked to close")
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def build_upstream_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_route("*", "/{tail:.*}", page)
    return app
