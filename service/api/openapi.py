"""The OpenAPI 3.1 description of every route, served at ``/openapi.json``.

Written out rather than derived: handlers take raw requests (the protocol pins exact header
semantics that a model-based signature can't express), so the contract is stated here and
checked against the running service by schemathesis in the test command (no 5xx, no status,
content type or body outside what is documented).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from litestar import get
from litestar.response.base import ASGIResponse

from service import __version__, jsonwire

__all__ = ["openapi_document", "openapi_handlers"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def _err(*codes: int) -> dict[str, Any]:
    return {
        str(c): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _empty(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "no body"} for c in codes}


_ANY_BODY: dict[str, Any] = {"*/*": {"schema": {}}}
_SSE: dict[str, Any] = {"text/event-stream": {}}
_STREAM_PATH = {
    "name": "path",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{1,200}$"},
}
_GEN_ID = {
    "name": "gen_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}


def _header(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema or {"type": "string"}}


def _query(
    name: str, schema: dict[str, Any] | None = None, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema or {"type": "string"},
    }


_OFFSET = {"type": "string", "pattern": "^(-1|[0-9]{16}_[0-9]{16})$"}
_READ_OFFSET = {"type": "string", "pattern": "^(-1|now|[0-9]{16}_[0-9]{16})$"}
_NONEMPTY = {"type": "string", "minLength": 1, "maxLength": 256}


@cache
def openapi_document() -> dict[str, Any]:
    """The document (built once)."""
    write_headers = [
        _header("Content-Type"),
        _header("Stream-TTL"),
        _header("Stream-Expires-At"),
        _header("Stream-Closed"),
        _header("Stream-Seq"),
        _header("Producer-Id"),
        _header("Producer-Epoch"),
        _header("Producer-Seq"),
    ]
    stream_ops: dict[str, Any] = {
        "parameters": [_STREAM_PATH],
        "put": {
            "summary": "Create a stream (idempotent)",
            "parameters": [
                *write_headers,
                _header("Stream-Forked-From"),
                _header("Stream-Fork-Offset"),
                _header("Stream-Fork-Sub-Offset"),
                _header("Stream-Public-Read", {"type": "string", "enum": ["true", "false"]}),
            ],
            "requestBody": {"required": False, "content": _ANY_BODY},
            "responses": {
                **_empty(200, 201),
                **_err(400, 401, 403, 404, 409, 410, 413, 429, 503),
            },
        },
        "post": {
            "summary": "Append (and/or close)",
            "parameters": write_headers,
            "requestBody": {"required": False, "content": _ANY_BODY},
            "responses": {
                **_empty(200, 204),
                **_err(400, 401, 403, 404, 409, 410, 413, 429, 503),
            },
        },
        "get": {
            "summary": "Read: catch-up, long-poll or SSE",
            "parameters": [
                _query("offset", _READ_OFFSET),
                _query("live", {"type": "string", "enum": ["long-poll", "sse"]}),
                _query("cursor"),
                _query("token"),
                _header("If-None-Match"),
            ],
            "responses": {
                "200": {"description": "data", "content": _ANY_BODY},
                **_empty(204, 304),
                **_err(400, 401, 403, 404, 410, 429, 503),
            },
        },
        "head": {
            "summary": "Metadata",
            "parameters": [_query("token")],
            "responses": _empty(200, 400, 401, 403, 404, 410, 503),
        },
        "delete": {
            "summary": "Delete",
            "responses": {**_empty(204), **_err(400, 401, 403, 404, 410, 429, 503)},
        },
    }
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "content": {"type": "string"},
        },
    }
    created = {
        "type": "object",
        "required": ["id", "events_url", "stream_url"],
        "properties": {
            "id": {"type": "string"},
            "events_url": {"type": "string"},
            "stream_url": {"type": "string"},
            "read_token": {"type": "string"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rivulet", "version": __version__},
        "components": {
            "schemas": {"Error": _ERROR, "Message": message, "GenerationCreated": created},
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"apiKey": []}],
        "paths": {
            "/livez": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "backend unavailable"},
                    }
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}},
            "/v1/generations": {
                "post": {
                    "summary": "Start a generation",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["messages"],
                                    "properties": {
                                        "provider": {
                                            "type": "string",
                                            "enum": ["fake", "openai", "anthropic"],
                                        },
                                        "model": _NONEMPTY,
                                        "messages": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 256,
                                            "items": {"$ref": "#/components/schemas/Message"},
                                        },
                                        "params": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "properties": {
                                                "max_tokens": {"type": "integer", "minimum": 1},
                                                "temperature": {"type": "number"},
                                                "top_p": {"type": "number"},
                                                "stop": {"type": "string"},
                                            },
                                        },
                                        "idempotency_key": _NONEMPTY,
                                        "public_read": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **{
                            str(c): {
                                "description": "created (201) or existing (200)",
                                "content": {
                                    "application/json": {
                                        "schema": {"$ref": "#/components/schemas/GenerationCreated"}
                                    }
                                },
                            }
                            for c in (200, 201)
                        },
                        **_err(400, 401, 403, 413, 429, 503),
                    },
                }
            },
            "/v1/generations/{gen_id}": {
                "parameters": [_GEN_ID],
                "delete": {
                    "summary": "Cancel",
                    "responses": {
                        "200": {
                            "description": "cancelled",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_err(401, 403, 404, 409, 429, 503),
                    },
                },
            },
            "/v1/generations/{gen_id}/events": {
                "parameters": [_GEN_ID],
                "get": {
                    "summary": "Follow (EventSource)",
                    "parameters": [
                        _query("offset", _OFFSET),
                        _query("token"),
                        _header("Last-Event-ID", _OFFSET),
                    ],
                    "responses": {
                        "200": {"description": "events", "content": _SSE},
                        **_empty(204),
                        **_err(400, 401, 403, 404, 429, 503),
                    },
                },
            },
            "/api/stream": {
                "get": {
                    "summary": "Seed-compatible one-shot stream",
                    "parameters": [
                        _query("prompt", {"type": "string", "minLength": 1}, required=True),
                        _query("messageId", _NONEMPTY, required=True),
                        _query("model"),
                    ],
                    "responses": {
                        "200": {"description": "events", "content": _SSE},
                        **_empty(204),
                        **_err(400, 401, 403, 404, 429, 503),
                    },
                }
            },
            "/v1/stream/{path}": stream_ops,
        },
    }


@get("/openapi.json", name="openapi", include_in_schema=False)
async def openapi_json() -> ASGIResponse:
    """The API description."""
    return ASGIResponse(
        body=jsonwire.dumps(openapi_document()).encode(),
        headers={"content-type": "application/json", "cache-control": "no-cache"},
    )


def openapi_handlers() -> list[Any]:
    """The schema route."""
    return [openapi_json]
