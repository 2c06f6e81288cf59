"""nameko's web server, answering JSON for what no route handles, with a request id on every request.

``tacoord.web.JsonApi`` (``@api``) runs on :class:`JsonWebServer`, one per
container like nameko's own ``WebServer``, which it extends in one place:

- a path no route has is a JSON 404, a method the path does not take a JSON
  405 with ``Allow`` (werkzeug's HTML pages otherwise); ``OPTIONS`` answers
  204 with ``Allow`` and never runs a handler;
- ``GET /`` is the service's index (its routes, their roles, a link to its
  OpenAPI document) and ``GET /openapi.json`` that document, both public and
  built from the routes' declarations (``tacoord.routes``, ``tacoord.openapi``);
  behind the gateway (``X-Forwarded-Prefix: /api/needs``) their paths carry
  the prefix;
- every request has an id: the caller's ``X-Request-Id`` when it looks like
  one (the gateway sends its own), else a new one. It is sent back in
  ``X-Request-Id``, is in the access line logged for every request (logger
  ``tacoord.http``: ``request_id=… GET /needs 200 3.1ms``), and in the log
  line of an unhandled error.
"""
import logging
import re
import time
import uuid

from eventlet import corolocal
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request

from tacoord import config
from tacoord.responses import error_body, json_response

log = logging.getLogger("tacoord.http")

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = re.compile(config.REQUEST_ID_PATTERN)   # the gateway keeps the same (infra/gateway.py)
ENVIRON_KEY = "tacoord.request_id"
INDEX_PATH, DOCUMENT_PATH = "/", "/openapi.json"
CORE_PATHS = (INDEX_PATH, DOCUMENT_PATH)
PREFIX = re.compile(r"^(/[a-z0-9_-]{1,40}){1,3}$")

_current = corolocal.local()  # the request this green thread serves (for error log lines)


def current_request_id():
    return getattr(_current, "request_id", None)


def request_id_of(environ):
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


class JsonWebServer(WebServer):
    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, **kwargs):
        server = super().get_wsgi_server(sock, wsgi_app, **kwargs)
        server.log_output = False  # eventlet's access line has no request id: JsonWsgiApp logs its own
        return server

    def routes(self):
        from tacoord.routes import routes_of
        if getattr(self, "_routes", None) is None:
            self._routes = routes_of(self.container.service_cls)
        return self._routes

    def document(self, prefix=""):
        """The service's OpenAPI document (made once per prefix: the routes do not change)."""
        from tacoord import openapi
        from tacoord.routes import service_summary
        documents = self.__dict__.setdefault("_documents", {})
        if prefix not in documents:
            documents[prefix] = openapi.service_document(
                self.container.service_name, self.routes(), service_summary(self.container.service_cls), prefix)
        return documents[prefix]

    def index(self, prefix=""):
        from tacoord import openapi
        return openapi.service_index(self.container.service_name, self.routes(), prefix)


class JsonWsgiApp(WsgiApp):
    def __call__(self, environ, start_response):
        started = time.monotonic()
        request_id = request_id_of(environ)
        environ[ENVIRON_KEY] = _current.request_id = request_id
        try:
            response = self.respond(environ)
        finally:
            _current.request_id = None
        response.headers[REQUEST_ID_HEADER] = request_id
        log.info("request_id=%s %s %s %s %.1fms", request_id, environ.get("REQUEST_METHOD"),
                 _target(environ), response.status_code, (time.monotonic() - started) * 1000)
        return response(environ, start_response)

    def respond(self, environ):
        request = Request(environ, shallow=True)  # as nameko's WsgiApp: the body is read by the handler
        adapter = self.url_map.bind_to_environ(environ)
        path, method = request.path, request.method
        if method == "OPTIONS":
            allowed = sorted(set(adapter.allowed_methods()) | ({"GET", "HEAD"} if path in CORE_PATHS else set()))
            if not allowed:
                return _not_found(request)
            return json_response(204, None, headers={"Allow": ", ".join(allowed + ["OPTIONS"])})
        if path in CORE_PATHS:
            if method not in ("GET", "HEAD"):
                return _not_allowed(request, ["GET", "HEAD"])
            prefix = _forwarded_prefix(environ)
            try:
                return json_response(200, self.server.index(prefix) if path == INDEX_PATH
                                     else self.server.document(prefix))
            except Exception:  # e.g. a body without an example (tacoord.openapi.EXAMPLES)
                log.exception("request_id=%s: could not build %s", environ[ENVIRON_KEY], path)
                return json_response(500, error_body(500, f"could not build {path}; it has been logged"))
        try:
            provider, values = adapter.match()
        except RequestRedirect as exc:
            return json_response(exc.code, {"redirect": exc.new_url}, headers={"Location": exc.new_url})
        except MethodNotAllowed as exc:
            return _not_allowed(request, exc.valid_methods or [])
        except NotFound:
            return _not_found(request)
        except HTTPException as exc:
            return json_response(exc.code, error_body(exc.code, exc.description or exc.name))
        request.path_values = values
        request.request_id = environ[ENVIRON_KEY]
        return provider.handle_request(request)


def _forwarded_prefix(environ):
    """Where the gateway serves this service (``X-Forwarded-Prefix: /api/needs``), for the links."""
    prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "")
    return prefix if PREFIX.match(prefix) else ""


def _target(environ):
    query = environ.get("QUERY_STRING")
    return environ.get("PATH_INFO", "") + (f"?{query}" if query else "")


def _not_found(request):
    return json_response(404, error_body(404, f"no route {request.method} {request.path}; "
                                              f"GET {INDEX_PATH} lists this service's routes"))


def _not_allowed(request, methods):
    methods = sorted(set(methods) - {"OPTIONS"})
    body = error_body(405, f"{request.method} is not allowed on {request.path}; allowed: {', '.join(methods)}")
    return json_response(405, {**body, "allowed": methods}, headers={"Allow": ", ".join(methods)})
