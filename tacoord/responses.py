"""JSON responses, and the one shape of every error body.

    {"error": "validation failed", "status": 422,
     "fields": {"article": ["UNCAC article must be between 5 and 62 (chapters II–VI)"]},
     "details": ["article: UNCAC article must be between 5 and 62 (chapters II–VI)"]}

``fields`` and ``details`` only when fields are named; a 405 adds ``allowed``
(the methods the path takes). ``tacoord.openapi`` documents this shape.
"""
import json

from werkzeug.wrappers import Response

from tacoord.envelope import describe_errors


def json_response(status, payload, headers=None):
    if status == 204:
        response = Response(status=204, headers=headers)
        del response.headers["Content-Type"]
        return response
    return Response(json.dumps(payload, default=str), status=status, headers=headers,
                    mimetype="application/json")


def error_body(status, message, fields=None):
    body = {"error": message, "status": status}
    if fields:
        body["fields"] = fields
        body["details"] = describe_errors(fields)
    return body
