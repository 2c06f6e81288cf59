"""The gateway's nginx configuration agrees with tacoord/config.py, Docker Compose and the web packages.

No nginx runs here (tests/integration/test_gateway.py starts a real one): the generated text is read.
"""
import json
import re
from pathlib import Path

import yaml

from infra import gateway
from tacoord import config
from tacoord.webserver import REQUEST_ID

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_shipped_docker_config_is_what_the_generator_makes_now():
    assert gateway.DOCKER_CONF.read_text(encoding="utf-8") == gateway.render(gateway.docker_settings()), \
        "stale: python -m infra.gateway config --docker -o infra/gateway/nginx.docker.conf"


def test_each_service_is_routed_under_its_prefix_to_its_port_from_the_config(monkeypatch):
    monkeypatch.setenv("TACOORD_NEEDS_HTTP_PORT", "18001")
    local = gateway.render(gateway.local_settings())
    docker = gateway.render(gateway.docker_settings())
    for name in config.SERVICES:
        port = 18001 if name == "needs" else config.HTTP_PORTS[name]
        assert f"upstream tacoord_{name} {{\n        server 127.0.0.1:{port};" in local
        assert f"upstream tacoord_{name} {{\n        server {name}:{config.HTTP_PORTS[name]};" in docker
        for text in (local, docker):
            block = re.search(rf"location /api/{name}/ \{{([^}}]*)\}}", text).group(1)
            assert f"set $tacoord_service {name};" in block and f"proxy_pass http://tacoord_{name}/;" in block
            # a proxy_set_header here would make nginx drop every one of the enclosing /api/ block's
            assert "proxy_set_header" not in block
    assert "proxy_set_header X-Forwarded-Prefix /api/$tacoord_service;" in local


def test_limits_and_the_port_come_from_the_environment(monkeypatch):
    for key, value in (("TACOORD_GATEWAY_PORT", "18080"), ("TACOORD_GATEWAY_RATE", "7"),
                       ("TACOORD_GATEWAY_BURST", "9"), ("TACOORD_MAX_BODY_BYTES", "12345")):
        monkeypatch.setenv(key, value)
    text = gateway.render(gateway.local_settings())
    assert "listen 127.0.0.1:18080;" in text
    assert "rate=7r/s;" in text and "limit_req zone=tacoord_api burst=9 nodelay;" in text
    assert "client_max_body_size 12345;" in text and "limit of 12345 bytes" in text


def test_every_answer_carries_the_security_headers_and_the_csp_allows_no_inline_script():
    text = gateway.render(gateway.docker_settings())
    csp = gateway.SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    server = text[text.index("    server {"):]
    for name, value in {**gateway.SECURITY_HEADERS, "X-Request-Id": "$tacoord_request_id"}.items():
        assert f'add_header {name} "{value}" always;' in server
    # nginx drops inherited add_header in a block that has its own: the one such block repeats them all
    blocks = re.findall(r"location [^{]+\{[^}]*add_header[^}]*\}", server)
    assert len(blocks) == 1 and all(name in blocks[0] for name in gateway.SECURITY_HEADERS)
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Request-Id"):
        assert f"proxy_hide_header {name};" in text  # the services' own are not sent twice


def test_every_error_the_gateway_makes_is_a_json_body_with_the_request_id():
    text = gateway.render(gateway.docker_settings())
    for status in (400, 404, 405, 413, 429, 500, 502, 504):
        assert re.search(rf"error_page [0-9 ]*{status}[0-9 ]* @\w+;", text), status
        body = re.search(rf"return {status} '(\{{.*\}})\\n';", text).group(1)
        parsed = json.loads(body.replace("$tacoord_request_id", "0" * 32).replace("$tacoord_service", "needs"))
        assert parsed["status"] == status and parsed["error"] and parsed["request_id"] == "0" * 32


def test_the_request_id_is_the_callers_when_the_services_would_keep_it_too():
    text = gateway.render(gateway.docker_settings())
    assert f'"~{REQUEST_ID.pattern}" $http_x_request_id;' in text
    assert "proxy_set_header X-Request-Id $tacoord_request_id;" in text
    assert "request_id=$tacoord_request_id" in text  # in the access log line


def test_compose_runs_the_official_image_with_the_generated_config_and_the_web_packages():
    service = COMPOSE["services"]["gateway"]
    assert service["image"].startswith("nginx:")
    assert service["ports"] == [f"{config.GATEWAY_PORT}:{config.GATEWAY_PORT}"]
    assert "./infra/gateway/nginx.docker.conf:/etc/nginx/nginx.conf:ro" in service["volumes"]
    settings = gateway.docker_settings()
    assert f"./web:{settings.web_dir}:ro" in service["volumes"]
    assert f"./docs/openapi.json:{settings.openapi_file}:ro" in service["volumes"]
    assert f"web-packages:{settings.web_dir}/node_modules:ro" in service["volumes"]
    assert set(service["depends_on"]) == set(config.SERVICES) | {"web-packages"}
    packages = COMPOSE["services"]["web-packages"]
    assert "npm ci --ignore-scripts" in packages["command"][-1]


def test_the_docs_page_takes_swagger_ui_from_the_locked_npm_package_not_a_cdn():
    package = json.loads((ROOT / "web" / "package.json").read_text())
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    version = package["dependencies"]["swagger-ui-dist"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin an exact version"
    assert lock["packages"]["node_modules/swagger-ui-dist"]["version"] == version
    page = (ROOT / "web" / "docs" / "index.html").read_text()
    for name in gateway.SWAGGER_FILES:
        assert f"vendor/{name}" in page
    for path in (ROOT / "web").rglob("*.html"):
        if "node_modules" in path.parts:
            continue
        html = path.read_text()
        assert "<script>" not in html and not re.search(r"<script(?![^>]*\ssrc=)", html), path  # no inline script
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path  # nothing from another origin
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "need_apt+=(nginx)" in bootstrap and "need_apt+=(npm)" in bootstrap
    assert "npm ci --ignore-scripts" in bootstrap
