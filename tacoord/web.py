"""HTTP entrypoints that speak JSON, check credentials, document themselves and never leak a traceback.

    class NeedsService:
        @api("POST", "/needs", roles=("state", "operator"), body=NeedSchema, response=NeedEventSchema)
        def file_need(self, request):
            body = read_json(request)                  # the declared body: 400/413/415/422 on bad input
            return 201, {...}                          # any JSON-ready payload

``body``, ``response`` and ``query`` (the query parameters' names, or a
schema) are optional and what ``tacoord.routes`` reads for the OpenAPI
document and the service's index (see there for their forms); a route that
declares none of them behaves as before. The handler's request carries
``request.principal`` (role, subject) and ``request.request_id``. Errors map
to statuses with a JSON body (``tacoord.responses``): ``ValidationError``/
``Rejected`` → 422 naming each field, bad JSON → 400, no or unknown
credential → 401, wrong role or scope → 403, ``NotFound`` → 404,
``Conflict`` → 409, too large → 413, a body that is not
``application/json`` → 415. Anything unexpected → 500 with an error id,
logged; never a stack trace. Paths and methods no route takes are JSON 404
and 405 too (``tacoord.webserver``).

Logging: a refused request (4xx) is one line, INFO (WARNING for 401 and 403), with
``route``, ``status``, ``role`` and ``reason``; a bug (500) is one ERROR line with its
traceback and error id. The handler's exceptions are caught in its worker and returned
(:class:`Raised`), so nameko's container never logs a refusal as a worker error. Every
line logged while a request is served carries its ``request_id`` (``X-Request-Id`` when the
caller sent a sane one, kept by ``tacoord.webserver``) and, once known, the ``role`` and
``actor`` (:mod:`tacoord.logs`).
"""
import functools
import inspect
import json
import logging
import uuid

from marshmallow import ValidationError
from nameko.extensions import SharedExtension
from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Response

from tacoord import config, logs
from tacoord.auth import ROLES, Authenticator, auth_db
from tacoord.errors import Conflict, Forbidden, NotFound, Rejected
from tacoord.ops import metrics_for
from tacoord.responses import error_body, json_response
from tacoord.routes import UNDECLARED, Route, schema_instance
from tacoord.safety import CONTROL, check_text, json_loads, reject_unsafe_keys
from tacoord.store import DatabaseClient, service_name
from tacoord.webserver import JsonWebServer, current_request_id

__all__ = ["api", "read_json", "read_body", "query_args", "require_scope", "json_response", "error_body",
           "PUBLIC", "BadRequest", "Unauthorized", "PayloadTooLarge", "UnsupportedMediaType", "JsonApi"]

log = logging.getLogger(__name__)

PUBLIC = ()  # roles=PUBLIC: no credential needed (health pages, unsubscribe links)


class BadRequest(Exception):
    pass


class Unauthorized(Exception):
    pass


class PayloadTooLarge(Exception):
    pass


class UnsupportedMediaType(Exception):
    pass


class Credentials(SharedExtension):
    """One credentials store per container, shared by all its routes: the container's
    database client and one cache of looked-up keys."""

    database_client = DatabaseClient()
    authenticator = None

    def for_requests(self):
        # Made on first use: nameko sets extensions up in no fixed order.
        if self.authenticator is None:
            prefix = self.container.config.get("TACOORD_DB_PREFIX") or config.db_prefix()
            self.authenticator = Authenticator(auth_db(self.database_client.get(), prefix))
        return self.authenticator


class Raised:
    """What a handler raised, returned by its worker instead (so the container logs no traceback)."""

    def __init__(self, exc):
        self.exc = exc


def _returning_raised(handler):
    """The handler, run with the request's log fields bound; an exception comes back as :class:`Raised`."""
    @functools.wraps(handler)
    def handle(service, request, *args, **kwargs):
        with logs.bound(**getattr(request, "log_fields", {})):
            try:
                return handler(service, request, *args, **kwargs)
            except Exception as exc:
                return Raised(exc)
    return handle


class JsonApi(HttpRequestHandler):
    server = JsonWebServer()
    credentials = Credentials()

    @classmethod
    def decorator(cls, *args, **kwargs):
        register = super().decorator(*args, **kwargs)
        return lambda handler: register(_returning_raised(handler))

    def check_signature(self, args, kwargs):
        """nameko's check, against the handler itself rather than its wrapper."""
        from nameko.exceptions import IncorrectSignature
        handler = inspect.unwrap(getattr(self.container.service_cls, self.method_name))
        try:
            inspect.getcallargs(handler, None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc))

    def __init__(self, method, url, roles=ROLES, body=UNDECLARED, response=None, query=(), **kwargs):
        self.roles = tuple(roles)
        self.body, self.response, self.query = body, response, query
        super().__init__(method, url, **kwargs)

    def route(self, service, name, doc=""):
        """What this route declares (``tacoord.routes.Route``)."""
        return Route(service, self.method, self.url, name, self.roles, self.body, self.response,
                     tuple(self.query) if isinstance(self.query, (list, tuple)) else self.query, doc)

    def setup(self):
        super().setup()
        cfg = self.container.config
        self.service = service_name(self.container)
        self.max_body = int(cfg.get(config.MAX_BODY_BYTES_KEY, 1_000_000))
        self.metrics = metrics_for(self.service)
        declared = self.route(self.service, "")
        self.body_schema, self.declared_query = declared.json_body_schema(), declared.query_names()

    def handle_request(self, request):
        request.max_content_length = self.max_body
        request.max_body = self.max_body
        request.declared_query, request.body_schema = self.declared_query, self.body_schema
        request.request_id = getattr(request, "request_id", None) or current_request_id() or uuid.uuid4().hex
        request.log_fields = {"request_id": request.request_id, "method": request.method, "route": self.url}
        with logs.bound(**request.log_fields):
            try:
                self._authorize(request)
                _check_query_text(request)
            except Exception as exc:
                return self._count(request, self.response_from_exception(exc))
            principal = request.principal
            if principal is not None:
                request.log_fields.update(role=principal.role, actor=principal.actor)
            with logs.bound(**request.log_fields):
                return self._count(request, super().handle_request(request))

    def _authorize(self, request):
        request.principal = self.credentials.for_requests().principal(request.headers.get("Authorization"))
        if not self.roles:
            return
        if request.principal is None:
            raise Unauthorized("a valid API key is required: 'Authorization: Bearer tck_…'")
        if request.principal.role not in self.roles:
            raise Forbidden(f"role '{request.principal.role}' may not {self.method} {self.url}; "
                            f"allowed: {', '.join(self.roles)}")

    def _count(self, request, response):
        self.metrics.http_requests.labels(method=request.method, status=f"{response.status_code // 100}xx").inc()
        if 400 <= response.status_code < 500:
            self._log_refusal(request, response)
        return response

    def _log_refusal(self, request, response):
        """One line per refused request (a bug, 500, was logged with its traceback already)."""
        try:
            body = json.loads(response.get_data(as_text=True))
            reason = "; ".join([body["error"]] + body.get("details", []))
        except (ValueError, KeyError, TypeError):
            reason = response.status
        principal = getattr(request, "principal", None)
        role = principal.role if principal is not None else None
        level = logging.WARNING if response.status_code in (401, 403) else logging.INFO
        log.log(level, "refused %s %s: %d %s", request.method, self.url, response.status_code, reason,
                extra={"route": self.url, "status": response.status_code, "role": role, "reason": reason})

    def response_from_result(self, result):
        if isinstance(result, Raised):
            return self.response_from_exception(result.exc)
        if isinstance(result, Response):
            return result
        status, headers, payload = 200, None, result
        if isinstance(result, tuple):
            status, payload = result[0], result[-1]
            headers = result[1] if len(result) == 3 else None
        if isinstance(payload, str):
            return Response(payload, status=status, headers=headers)
        return json_response(status, payload, headers)

    def response_from_exception(self, exc):
        if isinstance(exc, ValidationError):
            return json_response(422, error_body(422, "validation failed", exc.messages))
        if isinstance(exc, Rejected):
            return json_response(422, error_body(422, exc.reason, exc.messages()))
        for cls, status in ((BadRequest, 400), (Unauthorized, 401), (Forbidden, 403), (NotFound, 404),
                            (Conflict, 409), (PayloadTooLarge, 413), (UnsupportedMediaType, 415)):
            if isinstance(exc, cls):
                return json_response(status, error_body(status, str(exc)))
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error %s in %s %s (request_id=%s)", error_id, self.method, self.url,
                  current_request_id(), exc_info=exc)
        return json_response(500, error_body(500, f"internal error (id {error_id}); it has been logged"))


api = JsonApi.decorator


def read_body(request):
    length = request.content_length
    limit = getattr(request, "max_body", 1_000_000)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
    stream = request.stream
    if length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        stream = request.environ["wsgi.input"]  # werkzeug reads nothing of a chunked body; the server decodes it
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return data


def read_json(request, schema=None, many=None):
    """Parse and validate a JSON body with ``schema``, else the route's declared ``body`` schema, if any.

    An empty body is a 400, one whose ``Content-Type`` is not ``application/json`` (UTF-8) a 415 (no
    ``Content-Type`` at all is read as JSON);
    ``$`` keys, control characters in text (``tacoord.safety.check_text``) and ``schema.load``
    errors are a 422 naming each field."""
    raw = read_body(request)
    if not raw:
        raise BadRequest("request body is empty; send a JSON object")
    _require_json(request)
    try:
        payload = json_loads(raw)
    except ValueError as exc:  # UnicodeDecodeError too
        raise BadRequest(f"request body is not valid JSON: {exc}")
    reject_unsafe_keys(payload)
    schema = schema_instance(schema) if schema is not None else getattr(request, "body_schema", None)
    check_text(payload, schema)
    if schema is None:
        return payload
    many = schema.many if many is None else many
    if many and not isinstance(payload, list):
        raise BadRequest("request body must be a JSON array")
    if not many and not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return schema.load(payload, many=many)


def _require_json(request):
    """A body that says it is something other than JSON is a 415; one that says nothing is read as JSON."""
    raw = request.environ.get("headers_raw")  # eventlet reports a missing Content-Type as text/plain
    if raw is not None and not any(name.lower() == "content-type" for name, _ in raw):
        return
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != "application/json" or charset not in ("utf-8", "utf8"):
        given = request.headers.get("Content-Type", "")
        raise UnsupportedMediaType(f"send the body as 'Content-Type: application/json' (UTF-8); got {given!r}")


def _check_query_text(request):
    """No control character in a query parameter (tab and line breaks aside): 422 naming it."""
    errors = {}
    for name, values in request.args.lists():
        for value in (name, *values):
            found = CONTROL.search(value)
            if found:
                errors[name] = [f"control character U+{ord(found.group()):04X} is not allowed in a query parameter"]
    if errors:
        raise ValidationError(errors)


def query_args(request, allowed=None):
    """Query parameters restricted to ``allowed`` names (default: the route's declared ``query``);
    unknown ones are a 400."""
    if allowed is None:
        allowed = getattr(request, "declared_query", ())
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return {key: request.args.get(key) for key in allowed if request.args.get(key) not in (None, "")}


def require_scope(principal, subject, what="this resource"):
    """A non-operator acts only for its own subject."""
    if principal is None:
        raise Unauthorized("a valid API key is required")
    if principal.is_operator():
        return
    if principal.subject != subject:
        raise Forbidden(f"{principal.actor} may not act on {what} of {subject}")
