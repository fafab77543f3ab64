"""`session-gateway`: run | reload | check-config | keygen | admin | sandbox | demo.

Exit status: 0 on success, 2 for a configuration the gateway cannot use (one plain message, no traceback),
1 for anything else that stops it (a port in use, say).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError, Settings, load
from .logs import setup as setup_logging
from .routing import host_specificity


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except ConfigError as exc:
        print(f"session-gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"session-gateway: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="session-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"session-gateway {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve the gateway")
    run.add_argument("--config", required=True, help="the TOML configuration file")
    run.set_defaults(command=_run)

    reload = sub.add_parser("reload", help="validate a configuration, then have the gateway running it reload it "
                            "(found through [server] pid_file)")
    reload.add_argument("--config", required=True, help="the TOML configuration file the gateway runs")
    reload.set_defaults(command=_reload)

    check = sub.add_parser("check-config", help="validate a configuration and print its route table")
    check.add_argument("--config", required=True, help="the TOML configuration file")
    check.set_defaults(command=_check_config)

    sandbox = sub.add_parser("sandbox", help="run a local stand-in for an outside service")
    sandbox_kinds = sandbox.add_subparsers(required=True, metavar="KIND")
    okta = sandbox_kinds.add_parser("okta", help="an emulated Okta org (the API token comes from $OKTA_API_TOKEN)")
    okta.add_argument("--host", default="127.0.0.2", help="address to listen on (default 127.0.0.2)")
    okta.add_argument("--port", type=int, default=9010, help="port (default 9010)")
    okta.add_argument("--engine", choices=("identity", "classic"), default="identity",
                      help="Identity Engine (idx cookie) or Classic Engine (sid cookie)")
    okta.set_defaults(command=_sandbox_okta)

    admin = sub.add_parser("admin", help="operator actions on a running gateway (token from $GATEWAY_ADMIN_TOKEN)")
    actions = admin.add_subparsers(required=True, metavar="ACTION")
    policy = actions.add_parser("policy", help="switch a route's binding policy while the gateway runs (on every "
                                "replica with the Redis store), or return it to the configured one with --clear")
    policy.add_argument("route", help="the route's name")
    policy.add_argument("mode", nargs="?", choices=("enforce", "observe", "off"))
    policy.add_argument("--clear", action="store_true", help="drop the switch: the route's configured policy again")
    policy.add_argument("--url", default="http://127.0.0.1:8080/",
                        help="the gateway's URL, with its prefix or without it (then /.gateway/); default "
                             "http://127.0.0.1:8080/")
    policy.set_defaults(command=_admin_policy)

    keygen = sub.add_parser("keygen", help="print a new key for the binding cookie ([binding] keys)")
    keygen.set_defaults(command=_keygen)

    demo = sub.add_parser("demo", help="the Okta sandbox, two legacy SAML apps (enforce, off) and the gateway")
    demo.add_argument("--scripted", action="store_true",
                      help="walk the story by itself and print what each app shows after each step")
    demo.add_argument("--port", type=int, default=8080, help="the gateway's port on 127.0.0.1 (default 8080)")
    demo.add_argument("--okta-port", type=int, default=9010, help="the Okta sandbox's port on 127.0.0.2 (9010)")
    demo.set_defaults(command=_demo)
    return parser


def _run(args: argparse.Namespace) -> int:
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload asked for while starting must not kill the gateway
    from .run import EARLY_SIGHUP, serve

    signal.signal(signal.SIGHUP, EARLY_SIGHUP.hold)  # nor be lost: the file may have changed since it was read

    settings = load(args.config)
    setup_logging(settings.server.log_level, settings.log.format)
    serve(settings)
    return 0


def _reload(args: argparse.Namespace) -> int:
    """Validate the file here (a bad one is reported at once, and the gateway is not asked), then SIGHUP."""
    import signal

    from .reload import NoGateway, gateway_pid

    settings = load(args.config)
    pid_file = settings.server.pid_file
    if pid_file is None:
        print(f"session-gateway: {settings.source}: server.pid_file: expected a path, so that reload can find the "
              "running gateway (or send it SIGHUP yourself)", file=sys.stderr)
        return 2
    try:
        pid = gateway_pid(pid_file, args.config)
        os.kill(pid, signal.SIGHUP)
    except NoGateway as exc:
        print(f"session-gateway: {exc}", file=sys.stderr)
        return 1
    print(f"{settings.source}: valid; asked session-gateway (pid {pid}) to reload it: its log says what changed")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load(args.config)
    print(f"{settings.source}: valid")
    print(f"listen {settings.server.host}:{settings.server.port}, workers {settings.server.workers}, "
          f"gateway endpoints under {settings.server.prefix}")
    print(route_table_text(settings))
    return 0


def route_table_text(settings: Settings) -> str:
    """The effective route table, in the order requests are matched."""
    header = ("route", "host", "path", "upstream", "rewrite", "host header", "connect", "read", "max body")
    rows = [header]
    order = sorted(settings.routes.routes, key=lambda r: (host_specificity(r.host), len(r.path)), reverse=True)
    for r in order:
        rows.append((
            r.name, r.host, r.path, r.upstream_origin, r.rewrite or "-",
            "client's" if r.preserve_host else "upstream's", f"{r.connect_timeout:g}s", f"{r.read_timeout:g}s",
            "no limit" if r.max_request_body is None else f"{r.max_request_body} B",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


SANDBOX_PACKAGES = ("lxml", "signxml")  # pyproject.toml's [sandbox] extra


def _sandbox_installed(command: str) -> bool:
    """Whether the sandbox's packages import; if not, says in one line how to get them. The container image leaves
    the extra out: a gateway in production carries no stand-in Okta org."""
    import importlib

    for package in SANDBOX_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError:
            print(f"session-gateway: {command} needs the sandbox extra ({package} is not installed): "
                  "pip install 'session-gateway[sandbox]'", file=sys.stderr)
            return False
    return True


def _sandbox_okta(args: argparse.Namespace) -> int:
    if not _sandbox_installed("sandbox okta"):
        return 1
    from .sandbox.run import run_okta_sandbox

    setup_logging("info")
    asyncio.run(run_okta_sandbox(args.host, args.port, args.engine))
    return 0


def _admin_policy(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    if (args.mode is None) == (not args.clear):
        print("session-gateway: give either a mode (enforce, observe, off) or --clear", file=sys.stderr)
        return 2
    token = os.environ.get("GATEWAY_ADMIN_TOKEN")
    if not token:
        print("session-gateway: set GATEWAY_ADMIN_TOKEN to the gateway's operator token", file=sys.stderr)
        return 2
    url = admin_url(args.url) + f"admin/routes/{args.route}/policy"
    body = None if args.clear else json.dumps({"mode": args.mode}).encode()
    request = urllib.request.Request(url, body, method="DELETE" if args.clear else "PUT", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "User-Agent": f"session-gateway-cli ({os.environ.get('USER', 'unknown user')})"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the operator's own gateway
            changed = _json_object(answer.read())
    except urllib.error.HTTPError as exc:
        detail = _json_object(exc.read()).get("error", exc.reason)
        print(f"session-gateway: the gateway refused: {detail} ({exc.code})", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"session-gateway: cannot reach the gateway at {args.url}: {getattr(exc, 'reason', exc)}",
              file=sys.stderr)
        return 1
    if not {"route", "from", "to"} <= changed.keys():
        print(f"session-gateway: {url} did not answer as the gateway's admin API does (is --url the gateway, "
              "and its prefix the default?)", file=sys.stderr)
        return 1
    configured = "the configured policy" if args.clear else f"configured: {changed['configured']}"
    print(f"route {changed['route']}: policy {changed['from']} -> {changed['to']} ({configured})")
    if "warning" in changed:
        print(f"session-gateway: {changed['warning']}", file=sys.stderr)
    return 0


def admin_url(given: str) -> str:
    """The gateway's prefix URL, ending in "/": the URL as given when it has a path, else with /.gateway/."""
    from urllib.parse import urlsplit

    base = given.rstrip("/") + "/"
    return base if urlsplit(base).path not in ("", "/") else base + ".gateway/"


def _json_object(data: bytes) -> dict[str, object]:
    """The JSON object of an answer, or {} for anything else (an HTML error page, say)."""
    import json

    try:
        found = json.loads(data or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def _demo(args: argparse.Namespace) -> int:
    if not _sandbox_installed("demo"):
        return 1
    from .sandbox.demo import run_demo, run_scripted

    setup_logging("warning")
    if args.scripted:
        return 0 if asyncio.run(run_scripted(okta_port=args.okta_port, gateway_port=args.port)) else 1
    asyncio.run(run_demo(okta_port=args.okta_port, gateway_port=args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
