"""The gateway: nginx in front of every service, one origin for people and partner systems.

    python -m infra.gateway config [--docker] [--output FILE] [--check]   # print / write / check the config
    python -m infra.gateway start|stop|status                           # the local one (infra.stack does this)

One address (``http://127.0.0.1:8080/``, ``TACOORD_GATEWAY_PORT``):

- ``/api/<service>/…`` → that service, with the prefix taken off (``/api/needs/needs/KEN-9-…`` is the
  needs service's ``/needs/KEN-9-…``); ``/api/`` lists the services; ``/api/openapi.json`` is the merged
  OpenAPI document (``docs/openapi.json``, ``tacoord openapi``);
- ``/docs/`` the docs page (Swagger UI from the npm registry, ``web/package-lock.json``, served from
  ``web/node_modules``: nothing from a CDN);
- ``/`` the workspace: static files in ``web/workspace/``.

What it adds in front of the services: a body limit (``TACOORD_MAX_BODY_BYTES``, as the services', 413),
a rate limit per client address on ``/api`` (``TACOORD_GATEWAY_RATE`` requests per second, bursts of
``TACOORD_GATEWAY_BURST``, then 429), a request id for every request (the client's ``X-Request-Id`` when
it is 8–128 of ``A-Za-z0-9._:-``, as ``tacoord.webserver`` accepts, else nginx's own), passed to the
service, sent back and written in the access log beside the service's own log line; security headers on
every answer (a CSP that allows no inline script, ``X-Content-Type-Options``, ``frame-ancestors 'none'``);
and a JSON body for every error it makes itself (404, 405, 413, 429, 502, 504).

The same text (:func:`render`) serves the local stack (Debian's nginx as a plain process, prefix
directory ``$TACOORD_STATE_DIR/gateway``, started by ``infra.stack up``) and Docker Compose (the
official image; ``infra/gateway/nginx.docker.conf``, generated, checked by
``tests/unit/test_gateway_config.py``). Only the addresses and paths differ.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tacoord import config
from tacoord.config import REQUEST_ID_PATTERN

DOCKER_CONF = config.PROJECT_ROOT / "infra" / "gateway" / "nginx.docker.conf"
WEB_DIR = config.PROJECT_ROOT / "web"
OPENAPI_FILE = config.PROJECT_ROOT / "docs" / "openapi.json"
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")   # all the docs page takes from the package
TYPES = {"text/html": "html", "text/css": "css", "text/javascript": "js mjs", "application/json": "json map",
         "image/svg+xml": "svg", "image/png": "png", "image/x-icon": "ico", "font/woff2": "woff2",
         "text/plain": "txt", "text/csv": "csv"}
# The workspace and the docs page run only their own files; nobody may frame them.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass(frozen=True)
class Settings:
    listen: str                    # "127.0.0.1:8080" or "8080"
    upstreams: dict                # service -> "host:port"
    web_dir: str
    openapi_file: str
    prefix: str                    # nginx's prefix: pid, temp files (and logs, locally)
    rate: int = 20
    burst: int = 40
    max_body: int = 1_000_000
    user: str = ""                 # the workers' user when the master runs as root
    access_log: str = "logs/access.log"
    error_log: str = "logs/error.log"
    services: tuple = field(default=config.SERVICES)


def local_settings(**overrides):
    """The local stack's gateway, from tacoord/config.py (ports, limits) and the state directory."""
    values = dict(
        listen=f"127.0.0.1:{config.gateway_port()}",
        upstreams={name: f"127.0.0.1:{config.http_port(name)}" for name in config.SERVICES},
        web_dir=str(WEB_DIR), openapi_file=str(OPENAPI_FILE), prefix=str(config.state_dir() / "gateway"),
        rate=config.gateway_rate(), burst=config.gateway_burst(), max_body=config.max_body_bytes(),
        user="www-data" if os.geteuid() == 0 else "")
    values.update(overrides)
    return Settings(**values)


def docker_settings():
    """Docker Compose's gateway: the services by their compose names, on the ports of tacoord/config.py."""
    return Settings(listen=str(config.GATEWAY_PORT),
                    upstreams={name: f"{name}:{config.HTTP_PORTS[name]}" for name in config.SERVICES},
                    web_dir="/srv/tacoord/web", openapi_file="/srv/tacoord/docs/openapi.json",
                    prefix="/var/cache/nginx", user="nginx", access_log="/dev/stdout", error_log="/dev/stderr")


# --- the configuration ---------------------------------------------------------------------------

def _json(status, message, extra=""):
    """An nginx ``return`` of a JSON error body (only fixed text and the request id: nothing the client
    sent is echoed into it)."""
    return (f"default_type application/json;\n            return {status} "
            f"'{{\"error\": \"{message}\", \"status\": {status}{extra}, "
            f"\"request_id\": \"$tacoord_request_id\"}}\\n';")


def _headers(indent, extra=None):
    """Every answer's headers: security, and the request id (nginx drops the server's ``add_header``
    lines in a block that has its own, so such a block calls this too)."""
    headers = {**SECURITY_HEADERS, "X-Request-Id": "$tacoord_request_id", **(extra or {})}
    return "\n".join(f'{indent}add_header {name} "{value}" always;' for name, value in headers.items())


def _api_index(settings):
    return json.dumps({"services": {name: {"index": f"/api/{name}/", "openapi": f"/api/{name}/openapi.json"}
                                    for name in settings.services},
                       "openapi": "/api/openapi.json", "docs": "/docs/"})


def render(settings):
    """The whole nginx.conf for ``settings``."""
    types = "\n".join(f"        {media} {extensions};" for media, extensions in TYPES.items())
    upstreams = "\n".join(f"    upstream tacoord_{name} {{\n        server {address};\n        keepalive 8;\n    }}"
                          for name, address in settings.upstreams.items())
    # No proxy_set_header in these: nginx would then drop every one of the enclosing block's.
    services = "\n".join(f"""        location /api/{name}/ {{
            set $tacoord_service {name};
            proxy_pass http://tacoord_{name}/;
        }}
        location = /api/{name} {{
            set $tacoord_service {name};
            proxy_pass http://tacoord_{name}/;
        }}""" for name in settings.upstreams)
    # nginx makes these itself, owned by the workers' user
    temp = "\n".join(f"    {kind}_temp_path {settings.prefix}/{kind}_temp;" for kind in TEMP_KINDS)
    swagger = "|".join(name.replace(".", r"\.") for name in SWAGGER_FILES)
    return f"""# Generated by infra/gateway.py from tacoord/config.py: do not edit; regenerate with
#   python -m infra.gateway config --docker --output infra/gateway/nginx.docker.conf
{f"user {settings.user};" if settings.user else "# (workers run as the user who starts nginx)"}
worker_processes 1;
pid {settings.prefix}/nginx.pid;
error_log {settings.error_log} warn;

events {{
    worker_connections 512;
}}

http {{
    types {{
{types}
    }}
    default_type application/octet-stream;
    charset utf-8;
    charset_types text/css text/javascript application/json text/csv text/plain;
    server_tokens off;
    sendfile on;
{temp}

    # The request id: the client's when it is well-formed (as the services accept it), else nginx's.
    map $http_x_request_id $tacoord_request_id {{
        default $request_id;
        "~{REQUEST_ID_PATTERN}" $http_x_request_id;
    }}
    log_format tacoord '$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent '
                       '$request_time request_id=$tacoord_request_id upstream=$upstream_addr';
    access_log {settings.access_log} tacoord;

    # Per client address; /api only (pages and the docs are static files).
    limit_req_zone $binary_remote_addr zone=tacoord_api:10m rate={settings.rate}r/s;
    limit_req_status 429;
    limit_req_log_level warn;
    client_max_body_size {settings.max_body};
    client_body_buffer_size 128k;

{upstreams}

    server {{
        listen {settings.listen};
        server_name _;
        root {settings.web_dir}/workspace;
        index index.html;
{_headers("        ")}

        error_page 400 @bad_request;
        error_page 404 @not_found;
        error_page 405 @not_allowed;
        error_page 413 @too_large;
        error_page 429 @rate_limited;
        error_page 500 @internal;
        error_page 502 503 @unavailable;
        error_page 504 @timeout;

        location / {{
            try_files $uri $uri/ =404;
        }}
        location = /docs {{
            return 308 /docs/;
        }}
        location /docs/ {{
            alias {settings.web_dir}/docs/;
        }}
        location ~ ^/docs/vendor/({swagger})$ {{
            alias {settings.web_dir}/node_modules/swagger-ui-dist/$1;
        }}

        location /api/ {{
            limit_req zone=tacoord_api burst={settings.burst} nodelay;
            return 404;  # a path under /api/ that no location below takes
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-Id $tacoord_request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Prefix /api/$tacoord_service;  # for the links of the service's index
            proxy_connect_timeout 5s;
            proxy_send_timeout 120s;
            proxy_read_timeout 120s;
            # The gateway sets these for every answer; the services' own would be sent twice.
            proxy_hide_header X-Request-Id;
            proxy_hide_header Content-Security-Policy;
            proxy_hide_header X-Content-Type-Options;
            proxy_hide_header X-Frame-Options;
            proxy_hide_header Referrer-Policy;

            location = /api/ {{
                default_type application/json;
                return 200 '{_api_index(settings)}\\n';
            }}
            location = /api/openapi.json {{
                alias {settings.openapi_file};
                default_type application/json;
            }}
{services}
        }}

        location @bad_request {{
            {_json(400, "the gateway could not read this request")}
        }}
        location @not_found {{
            {_json(404, "nothing here; GET /api/ lists the services and /docs/ documents them")}
        }}
        location @not_allowed {{
            {_json(405, "method not allowed here")}
        }}
        location @too_large {{
            {_json(413, f"the request body is larger than the limit of {settings.max_body} bytes")}
        }}
        location @rate_limited {{
{_headers("            ", {"Retry-After": "1"})}
            {_json(429, f"too many requests from this client: at most {settings.rate} per second "
                        f"(bursts of {settings.burst}); wait a moment and try again")}
        }}
        location @internal {{
            {_json(500, "the gateway failed on this request; it has been logged")}
        }}
        location @unavailable {{
            {_json(502, "the $tacoord_service service is not answering; try again in a moment")}
        }}
        location @timeout {{
            {_json(504, "the $tacoord_service service took too long to answer")}
        }}
    }}
}}
"""


# --- the local process ---------------------------------------------------------------------------

class GatewayError(SystemExit):
    def __init__(self, message):
        super().__init__(f"gateway: {message}")


def paths(settings):
    prefix = Path(settings.prefix)
    return {"conf": prefix / "nginx.conf", "pid": prefix / "nginx.pid", "access": prefix / "logs" / "access.log",
            "error": prefix / "logs" / "error.log"}


def nginx_binary():
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        raise GatewayError("nginx is not installed: run scripts/bootstrap.sh (apt-get install nginx)")
    return found


def _nginx(settings, *args, check=True):
    result = subprocess.run([nginx_binary(), "-p", f"{settings.prefix}/", "-c", str(paths(settings)["conf"]), *args],
                            capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise GatewayError(f"nginx {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def pid(settings):
    try:
        number = int(paths(settings)["pid"].read_text().strip())
        os.kill(number, 0)
        return number
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def write_config(settings):
    (Path(settings.prefix) / "logs").mkdir(parents=True, exist_ok=True)
    paths(settings)["conf"].write_text(render(settings), encoding="utf-8")
    _nginx(settings, "-t", "-q")


def start(settings):
    """Write the config, check it (``nginx -t``) and start nginx (it daemonizes). When it runs
    already, it reloads the (re-written) config instead; False then."""
    write_config(settings)
    if pid(settings):
        _nginx(settings, "-s", "reload")
        return False
    paths(settings)["pid"].unlink(missing_ok=True)
    _nginx(settings)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not pid(settings):
        time.sleep(0.05)
    if not pid(settings):
        raise GatewayError(f"nginx did not start; see {paths(settings)['error']}")
    return True


def stop(settings):
    number = pid(settings)
    if number:
        os.kill(number, signal.SIGQUIT)  # graceful: finish the requests in flight
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid(settings):
            time.sleep(0.05)
        if pid(settings):
            os.kill(number, signal.SIGKILL)
    paths(settings)["pid"].unlink(missing_ok=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m infra.gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("config", "start", "stop", "status"))
    parser.add_argument("--docker", action="store_true", help="config: the Docker Compose flavour")
    parser.add_argument("--output", "-o", metavar="FILE", help="config: write it there")
    parser.add_argument("--check", action="store_true", help="config: exit 1 if FILE differs from a fresh one")
    args = parser.parse_args(argv)
    settings = docker_settings() if args.docker else local_settings()
    if args.command == "config":
        text = render(settings)
        if args.check:
            path = Path(args.output or DOCKER_CONF)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is out of date: run python -m infra.gateway config --docker -o {path}", file=sys.stderr)
                return 1
            return 0
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    elif args.command == "start":
        start(settings)
    elif args.command == "stop":
        stop(settings)
    else:
        print(f"gateway   {'up' if pid(settings) else 'down'}  http://{settings.listen}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
