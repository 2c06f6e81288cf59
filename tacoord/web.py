"""HTTP entrypoints that speak JSON, check credentials and never leak a traceback.

    class NeedsService:
        @api("POST", "/needs", roles=("state", "operator"))
        def file_need(self, request):
            body = read_json(request, NeedSchema())    # 400/413/422 on bad input
            return 201, {...}                          # any JSON-ready payload

The handler's request carries ``request.principal`` (role, subject). Errors
map to statuses with a JSON body: ``ValidationError``/``Rejected`` → 422
naming each field, bad JSON → 400, no or unknown credential → 401, wrong
role or scope → 403, ``NotFound`` → 404, ``Conflict`` → 409, too large → 413.
Anything unexpected → 500 with an error id, logged; never a stack trace.

Logging: a refused request (4xx) is one line, INFO (WARNING for 401 and 403), with
``route``, ``status``, ``role`` and ``reason``; a bug (500) is one ERROR line with its
traceback and error id. The handler's exceptions are caught in its worker and returned
(:class:`Raised`), so nameko's container never logs a refusal as a worker error. Every
line logged while a request is served carries its ``request_id`` (``X-Request-Id`` when the
caller sent a sane one) and, once known, the ``role`` and ``actor`` (:mod:`tacoord.logs`).
"""
import functools
import inspect
import json
import logging
import re
import uuid

from marshmallow import ValidationError
from nameko.extensions import SharedExtension
from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Response

from tacoord import config, logs
from tacoord.auth import ROLES, Authenticator, auth_db
from tacoord.envelope import describe_errors
from tacoord.errors import Conflict, Forbidden, NotFound, Rejected
from tacoord.ops import metrics_for
from tacoord.safety import json_loads, reject_unsafe_keys
from tacoord.store import DatabaseClient, service_name

log = logging.getLogger(__name__)

PUBLIC = ()  # roles=PUBLIC: no credential needed (health pages, unsubscribe links)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BadRequest(Exception):
    pass


class Unauthorized(Exception):
    pass


class PayloadTooLarge(Exception):
    pass


def json_response(status, payload, headers=None):
    return Response(json.dumps(payload, default=str), status=status, headers=headers,
                    mimetype="application/json")


def error_body(status, message, fields=None):
    body = {"error": message, "status": status}
    if fields:
        body["fields"] = fields
        body["details"] = describe_errors(fields)
    return body


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

    def __init__(self, method, url, roles=ROLES, **kwargs):
        self.roles = tuple(roles)
        super().__init__(method, url, **kwargs)

    def setup(self):
        super().setup()
        cfg = self.container.config
        self.service = service_name(self.container)
        self.max_body = int(cfg.get(config.MAX_BODY_BYTES_KEY, 1_000_000))
        self.metrics = metrics_for(self.service)

    def handle_request(self, request):
        request.max_content_length = self.max_body
        request.max_body = self.max_body
        sent = request.headers.get("X-Request-Id", "")
        request.request_id = sent if REQUEST_ID.match(sent) else uuid.uuid4().hex
        request.log_fields = {"request_id": request.request_id, "method": request.method, "route": self.url}
        with logs.bound(**request.log_fields):
            try:
                self._authorize(request)
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
        for cls, status in ((BadRequest, 400), (Unauthorized, 401), (Forbidden, 403),
                            (NotFound, 404), (Conflict, 409), (PayloadTooLarge, 413)):
            if isinstance(exc, cls):
                return json_response(status, error_body(status, str(exc)))
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error %s in %s %s", error_id, self.method, self.url, exc_info=exc)
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


def read_json(request, schema=None, many=False):
    """Parse and validate a JSON body; ``schema.load`` errors become 422."""
    raw = read_body(request)
    if not raw:
        raise BadRequest("request body is empty; send a JSON object")
    try:
        payload = json_loads(raw)
    except ValueError as exc:  # UnicodeDecodeError too
        raise BadRequest(f"request body is not valid JSON: {exc}")
    reject_unsafe_keys(payload)
    if schema is None:
        return payload
    if many and not isinstance(payload, list):
        raise BadRequest("request body must be a JSON array")
    if not many and not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return schema.load(payload, many=many)


def query_args(request, allowed):
    """Query parameters restricted to ``allowed`` names; unknown ones are a 400."""
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
