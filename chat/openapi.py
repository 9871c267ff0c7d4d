"""The OpenAPI 3.1 document of the JSON API and `/v1`, served at `/api/schema/`.

Written by hand beside the handlers it describes; a test checks that every API route is in it,
that it is a valid OpenAPI document, and that real responses match its schemas.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from chat import compat


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Invalid request: not a JSON object, nested over 32 levels, a NUL or lone surrogate, a wrong type",
        401: "No session and no valid token",
        403: "CSRF token missing (session requests)",
        404: "No such conversation (or not yours)",
        409: "A reply is already being written",
        413: "The body is over the size limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default)",
        429: "Over a limit; see Retry-After",
    }
    return {str(s): _json(_ref("Error"), words[s]) for s in statuses}


CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
SSE_BODY = {
    "description": "Server-sent events: `event:` the type, `id:` a cursor for Last-Event-ID, `data:` the JSON event.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _schemas() -> dict[str, Any]:
    """The shapes, built when asked so the model list follows the settings."""
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "detail"],
                    "properties": {"code": {"type": "string"}, "detail": {"type": "string"}},
                }
            },
        },
        "Usage": {
            "type": "object",
            "properties": {
                name: {"type": "integer"}
                for name in (
                    "prompt_tokens",
                    "completion_tokens",
                    "reasoning_tokens",
                    "prompt_cache_hit_tokens",
                    "prompt_cache_miss_tokens",
                )
            },
        },
        "Conversation": {
            "type": "object",
            "required": ["id", "title", "model", "thinking", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "title": {"type": "string"},
                "model": {"type": "string"},
                "thinking": {"type": "boolean"},
                "reasoning_effort": {
                    "type": "string",
                    "enum": ["", "high", "max"],
                    "description": "how hard a thinking reply thinks; empty: DeepSeek's default",
                },
                "system_prompt": {"type": "string"},
                "pinned": {"type": "boolean", "description": "shown on top of the owner's sidebar"},
                "archived": {"type": "boolean", "description": "kept out of the owner's sidebar list"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
        "ConversationDetail": {
            "allOf": [
                _ref("Conversation"),
                {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {"messages": {"type": "array", "items": _ref("Message")}, "usage": _ref("Usage")},
                },
            ]
        },
        "ConversationInput": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "maxLength": 200},
                "model": {"type": "string", "enum": list(settings.DEEPSEEK_MODELS)},
                "thinking": {"type": "boolean"},
                "reasoning_effort": {"type": "string", "enum": ["", "high", "max"]},
                "system_prompt": {"type": "string"},
                "pinned": {"type": "boolean"},
                "archived": {"type": "boolean"},
            },
        },
        "Message": {
            "type": "object",
            "required": ["id", "role", "content", "reasoning", "status", "created_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "conversation_id": {"type": "string", "format": "uuid"},
                "role": {"type": "string", "enum": ["user", "assistant"]},
                "content": {"type": "string"},
                "reasoning": {"type": "string"},
                "status": {"type": "string", "enum": ["streaming", "complete", "stopped", "failed"]},
                "created_at": {"type": "string", "format": "date-time"},
                "model": {"type": "string"},
                "finish_reason": {"type": "string"},
                "notice": {"type": "string"},
                "context_dropped": {"type": "integer"},
                "time_to_first_token_ms": {"type": "integer"},
                "duration_ms": {"type": "integer"},
                "client_id": {"type": "string"},
                "versions": {
                    "type": "array",
                    "items": {"type": "string", "format": "uuid"},
                    "description": "All versions of this turn (edits, regenerations), oldest first",
                },
                "usage": _ref("Usage"),
                "error": {
                    "type": "object",
                    "required": ["code", "detail"],
                    "properties": {"code": {"type": "string"}, "detail": {"type": "string"}},
                },
            },
        },
        "Event": {
            "description": "One event, as on the WebSocket: conversation.state, message.created, message.delta, "
            "message.completed, conversation.updated or conversation.deleted.",
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string"},
                "message_id": {"type": "string", "format": "uuid"},
                "seq": {"type": "integer", "minimum": 1},
                "content": {"type": "string"},
                "reasoning": {"type": "string"},
                "status": {"type": "string"},
                "message": _ref("Message"),
                "conversation": _ref("Conversation"),
            },
        },
        "Token": {
            "type": "object",
            "required": ["id", "name", "prefix", "created_at", "last_used_at"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "prefix": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "last_used_at": {"type": ["string", "null"], "format": "date-time"},
                "token": {"type": "string", "description": "Only in the answer that made it: copy it then."},
            },
        },
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "model": {"type": "string", "enum": list(settings.DEEPSEEK_MODELS)},
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": compat.MAX_MESSAGES,
                    "description": f"At most {compat.MAX_TOTAL_CHARS:,} characters in all, each message at most "
                    f"{settings.CHAT_MAX_MESSAGE_CHARS:,}.",
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                            "content": {
                                "oneOf": [
                                    {"type": "string"},
                                    {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                                        },
                                    },
                                ]
                            },
                        },
                    },
                },
                "stream": {"type": "boolean"},
                "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                "thinking": {"type": "object", "properties": {"type": {"enum": ["enabled", "disabled"]}}},
                "max_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"Clamped to the model's maximum, {settings.DEEPSEEK_MAX_OUTPUT_TOKENS:,}.",
                },
                "max_completion_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The same as max_tokens, and takes precedence over it.",
                },
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "stop": {
                    "oneOf": [
                        {"type": "string", "maxLength": compat.MAX_STOP_CHARS},
                        {
                            "type": "array",
                            "items": {"type": "string", "maxLength": compat.MAX_STOP_CHARS},
                            "maxItems": compat.MAX_STOP,
                        },
                    ]
                },
                "response_format": {"type": "object", "properties": {"type": {"enum": ["text", "json_object"]}}},
            },
        },
        "OpenAIUsage": {
            "type": ["object", "null"],
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
                "prompt_tokens_details": {"type": "object"},
                "completion_tokens_details": {"type": "object"},
                "prompt_cache_hit_tokens": {"type": "integer"},
                "prompt_cache_miss_tokens": {"type": "integer"},
            },
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "message", "finish_reason"],
                        "properties": {
                            "index": {"type": "integer"},
                            "finish_reason": {"type": "string"},
                            "message": {
                                "type": "object",
                                "required": ["role", "content"],
                                "properties": {
                                    "role": {"const": "assistant"},
                                    "content": {"type": "string"},
                                    "reasoning_content": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "usage": _ref("OpenAIUsage"),
            },
        },
        "Model": {
            "type": "object",
            "required": ["id", "object", "owned_by"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
            },
        },
    }


def _paths() -> dict[str, Any]:
    conversation = [CONVERSATION_ID]
    return {
        "/api/conversations/": {
            "get": {
                "summary": "The caller's conversations, newest first",
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Only those whose title or any message contains this text (no NUL)",
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"conversations": {"type": "array", "items": _ref("Conversation")}},
                        },
                        "The list",
                    ),
                    **_errors(400, 401),
                },
            },
            "post": {
                "summary": "Start a conversation",
                "requestBody": {"content": {"application/json": {"schema": _ref("ConversationInput")}}},
                "responses": {"201": _json(_ref("Conversation"), "Made"), **_errors(400, 401, 403, 413)},
            },
        },
        "/api/conversations/{conversation_id}/": {
            "parameters": conversation,
            "get": {
                "summary": "A conversation with its messages, oldest first",
                "responses": {"200": _json(_ref("ConversationDetail"), "The conversation"), **_errors(401, 404)},
            },
            "patch": {
                "summary": "Rename it or change its settings",
                "requestBody": {"content": {"application/json": {"schema": _ref("ConversationInput")}}},
                "responses": {"200": _json(_ref("Conversation"), "Changed"), **_errors(400, 401, 403, 404, 413)},
            },
            "delete": {
                "summary": "Delete it; a reply being written is stopped",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
            },
        },
        "/api/conversations/{conversation_id}/messages/": {
            "parameters": conversation,
            "post": {
                "summary": "Send a message; 202, or this reply's events as NDJSON or SSE (by Accept)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["content"],
                                "properties": {"content": {"type": "string"}, "client_id": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {"user_message": _ref("Message"), "assistant_message": _ref("Message")},
                        },
                        "Stored; the reply is written for every watcher",
                    ),
                    "200": {
                        "description": "With Accept: application/x-ndjson or text/event-stream, the reply's events "
                        "until message.completed",
                        "content": {
                            "application/x-ndjson": {"schema": _ref("Event")},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 403, 404, 409, 413, 429),
                },
            },
        },
        "/api/conversations/{conversation_id}/events/": {
            "parameters": conversation,
            "get": {
                "summary": "Every event of the conversation as SSE, from conversation.state or after Last-Event-ID",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Resume: exactly the events after this cursor are sent, deltas by seq.",
                    }
                ],
                "responses": {"200": SSE_BODY, **_errors(401, 404)},
            },
        },
        "/api/conversations/{conversation_id}/stop/": {
            "parameters": conversation,
            "post": {
                "summary": "Stop the reply being written (its upstream request is closed)",
                "responses": {
                    "202": _json(
                        {"type": "object", "properties": {"message_id": {"type": "string"}}}, "Stop asked for"
                    ),
                    **_errors(400, 401, 403, 404),
                },
            },
        },
        "/api/conversations/{conversation_id}/export/": {
            "parameters": conversation,
            "get": {
                "summary": "Download the conversation (the branch shown) as Markdown or JSON",
                "parameters": [
                    {"name": "format", "in": "query", "required": False, "schema": {"enum": ["md", "json"]}}
                ],
                "responses": {
                    "200": {
                        "description": "An attachment",
                        "content": {
                            "text/markdown": {"schema": {"type": "string"}},
                            "application/json": {"schema": _ref("ConversationDetail")},
                        },
                    },
                    **_errors(400, 401, 404),
                },
            },
        },
        "/api/usage/": {
            "get": {
                "summary": "The caller's tokens today (UTC) and in all",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"today": _ref("Usage"), "total": _ref("Usage")}}, "Usage"
                    ),
                    **_errors(401),
                },
            }
        },
        "/api/tokens/": {
            "get": {
                "summary": "The caller's live API tokens",
                "description": "Session only: a request with a bearer token is refused (403 session_required).",
                "security": [{"session": []}],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"tokens": {"type": "array", "items": _ref("Token")}}},
                        "The tokens (never their values)",
                    ),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Make a token; its value is in this answer only",
                "description": "Session only (with the CSRF token): a bearer token cannot make tokens.",
                "security": [{"session": []}],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {"201": _json(_ref("Token"), "Made"), **_errors(400, 401, 403, 413)},
            },
        },
        "/api/tokens/{token_id}/": {
            "parameters": [{"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "delete": {
                "summary": "Revoke a token",
                "description": "Session only (with the CSRF token): a bearer token cannot revoke tokens.",
                "security": [{"session": []}],
                "responses": {"204": {"description": "Revoked"}, **_errors(401, 403, 404)},
            },
        },
        "/v1/models": {
            "get": {
                "summary": "OpenAI-compatible: the models offered",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"data": {"type": "array", "items": _ref("Model")}}}, "Models"
                    ),
                    "401": _json(_ref("OpenAIError"), "No valid token"),
                },
            }
        },
        "/v1/models/{model_id}": {
            "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "OpenAI-compatible: one model",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json(_ref("Model"), "The model"),
                    "404": _json(_ref("OpenAIError"), "Unknown model"),
                },
            },
        },
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI-compatible chat completion, stored as a conversation of the token's owner",
                "security": [{"bearer": []}],
                "requestBody": {"content": {"application/json": {"schema": _ref("ChatCompletionRequest")}}},
                "responses": {
                    "200": {
                        "description": "The whole reply, or with stream: true `chat.completion.chunk` SSE then [DONE]",
                        "content": {
                            "application/json": {"schema": _ref("ChatCompletion")},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **{
                        str(status): _json(_ref("OpenAIError"), words)
                        for status, words in (
                            (400, "Invalid request"),
                            (401, "No valid token"),
                            (413, "The body is over the size limit"),
                            (402, "The DeepSeek account is out of credit"),
                            (429, "Over a limit; see Retry-After"),
                            (502, "DeepSeek failed"),
                            (503, "DeepSeek unavailable"),
                            (504, "DeepSeek stalled"),
                        )
                    },
                },
            }
        },
    }


def schema(*, server_url: str) -> dict[str, Any]:
    """The whole document, with this site as its server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DeepSeek Chat API",
            "version": "1",
            "description": "Conversations, streamed replies (NDJSON, SSE with resume) and an OpenAI-compatible "
            "endpoint. Authenticate with a personal token (`Authorization: Bearer …`) or a session with its "
            "CSRF token.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A personal API token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
            "schemas": _schemas(),
        },
        "paths": _paths(),
    }
