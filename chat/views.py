"""The pages: the chat itself, sign-up, and the new-conversation form."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, gettext_lazy
from django.views import csrf, defaults
from django.views.decorators.http import require_http_methods, require_POST
from pydantic import TypeAdapter, ValidationError

from chat import (
    api,
    apiauth,
    apidoc,
    attachments,
    compat,
    fields,
    inputs,
    language,
    schemas,
    selectors,
    serializers,
    services,
    signin,
)
from chat.eventschema import AttachmentDict
from chat.models import Conversation, Preferences


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """The language chosen in the page: kept in the cookie, and on the account when signed in."""
    chosen = language.supported(request.POST.get("language"))
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    response = redirect(target)
    if chosen is None:
        return response
    if request.user.is_authenticated:
        services.user_language_set(user=request.user, language=chosen)
    translation.activate(chosen)
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        chosen,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
        secure=request.is_secure(),
    )
    return response


CUSTOM_INSTRUCTIONS = TypeAdapter(fields.CustomInstructions)


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    """The user's settings: the page's language and the custom instructions every new reply gets."""
    preferences = Preferences.objects.filter(user=request.user).first()
    instructions = preferences.custom_instructions if preferences else ""
    error, saved = "", False
    if request.method == "POST":
        instructions = request.POST.get("custom_instructions", "")
        try:
            text = CUSTOM_INSTRUCTIONS.validate_python(instructions)
        except ValidationError as exc:
            error = fields.refusal_of(exc.errors()).detail
        else:
            services.custom_instructions_set(user=request.user, text=text)
            saved = True
    context = {
        "custom_instructions": instructions,
        "error": error,
        "saved": saved,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }
    return render(request, "registration/settings.html", context, status=400 if error else 200)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The chat page with no conversation open: the empty state and the sidebar."""
    return _chat_page(request, conversation=None)


@login_required
def conversation_page(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The chat page with one of the user's conversations open."""
    conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    if conversation is None:
        raise Http404(gettext("No such conversation."))
    return _chat_page(request, conversation=conversation)


def _chat_page(
    request: HttpRequest,
    *,
    conversation: Conversation | None,
    refusal: str = "",
    draft: dict[str, object] | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render the chat page; the script takes the conversation's id and paths from the page."""
    return render(
        request,
        "chat/chat.html",
        {
            "conversation": conversation,
            "refusal": refusal,
            "draft": draft
            or {"model": settings.DEEPSEEK_MODELS[0], "thinking": True, "reasoning_effort": "", "content": ""},
            "conversations": selectors.conversation_list(user=request.user),
            "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "chat_tools": [tool.name for tool in selectors.chat_tools()] if conversation is not None else [],
            "conversation_config": {
                "id": str(conversation.id),
                "socketPath": f"/ws/conversations/{conversation.id}/",
                "apiPath": f"/api/conversations/{conversation.id}/",
                "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
            }
            if conversation is not None
            else None,
            "home_config": {
                "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
                "attachments": _draft_files(request, draft),
            },
            "attachment_limits": _attachment_limits(),
        },
        status=status,
    )


def _draft_files(request: HttpRequest, draft: dict[str, object] | None) -> list[AttachmentDict]:
    """The files of a refused home form that are still the user's to send, to show as chips again."""
    ids = (draft or {}).get("attachments") or []
    if not isinstance(ids, list) or not ids:
        return []
    return [serializers.attachment_to_dict(file) for file in selectors.attachments_unsent(user=request.user, ids=ids)]


def _attachment_limits() -> dict[str, object]:
    """What the composer checks before a file leaves the browser: the limits the server enforces again."""
    return {
        "max_bytes": settings.CHAT_ATTACHMENT_MAX_BYTES,
        "max_files": settings.CHAT_ATTACHMENTS_PER_MESSAGE,
        "accept": attachments.ACCEPT,
    }


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    """The home composer: the conversation is made with its first message, so no empty one is left."""
    choices = {
        "model": request.POST.get("model") or None,
        "thinking": request.POST.get("thinking") == "on",
        "reasoning_effort": request.POST.get("reasoning_effort", ""),
        "content": request.POST.get("content", ""),
        "attachments": request.POST.getlist("attachments"),
    }
    try:
        start = schemas.ConversationStart.model_validate(choices)
        conversation = services.conversation_start(owner=request.user, **start.model_dump())
    except ValidationError as exc:
        refusal = fields.refusal_of(exc.errors())
        return _chat_page(request, conversation=None, refusal=refusal.detail, draft=choices, status=400)
    except services.ServiceError as exc:
        status = 429 if exc.retry_after else 400
        return _chat_page(request, conversation=None, refusal=exc.detail, draft=choices, status=status)
    return redirect("chat:conversation", conversation_id=conversation.id)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log in; each attempt counts against the address's sign-ups before it is checked."""
    if request.user.is_authenticated:
        return redirect("chat:home")
    refusal = signin.signup_refusal(request) if request.method == "POST" else None
    form = signin.SignupForm(request.POST or None, refusal=refusal)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:home")
    return signin.refused(render(request, "registration/signup.html", {"form": form}), refusal)


@login_required
@require_http_methods(["GET", "POST"])
def tokens_page(request: HttpRequest) -> HttpResponse:
    """Account settings: make personal API tokens (each shown once) and revoke them."""
    created, error = None, None
    if request.method == "POST":
        if "revoke" in request.POST:
            token_id = inputs.id_param(request.POST["revoke"])  # not a number: no such token
            token = request.user.api_tokens.active().filter(id=token_id).first() if token_id is not None else None
            if token is not None:
                services.token_revoke(token=token)
            return redirect("chat:tokens")
        try:
            name = inputs.text_param(request.POST, "name").strip()
        except inputs.InvalidInput as exc:  # a NUL, which PostgreSQL refuses in text
            name, error = "", exc.detail
        if name:
            created = services.token_create(user=request.user, name=name)[1]
    context = {"tokens": request.user.api_tokens.active(), "created": created, "error": error}
    return render(request, "registration/tokens.html", context, status=400 if error else 200)


EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# The examples shown on the docs page: the same files the tests run against a live site.
EXAMPLES = [
    (gettext_lazy("curl: a reply as NDJSON"), "curl_ndjson.sh"),
    (gettext_lazy("curl: the OpenAI-compatible endpoint"), "curl_openai.sh"),
    (gettext_lazy("Python (httpx): a reply as NDJSON"), "httpx_ndjson.py"),
    (gettext_lazy("Python (httpx): a conversation's events over SSE, with resume"), "httpx_sse_resume.py"),
    (gettext_lazy("Python (openai): any OpenAI client"), "openai_sdk.py"),
    (gettext_lazy("Python (openai): tools (function calling)"), "openai_tools.py"),
]


def _site_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def api_docs(request: HttpRequest) -> HttpResponse:
    """How programs use the site, with examples that the test suite runs as they are shown."""
    examples = [{"title": title, "name": name, "code": (EXAMPLES_DIR / name).read_text()} for title, name in EXAMPLES]
    return render(
        request,
        "chat/api_docs.html",
        {
            "examples": examples,
            "site_url": _site_url(request),
            "model_list": format_html_join(", ", "<code>{}</code>", ((model,) for model in settings.DEEPSEEK_MODELS)),
        },
    )


def api_schema(request: HttpRequest) -> JsonResponse:
    """The OpenAPI document, naming this site as its server."""
    return JsonResponse(apidoc.schema(server_url=_site_url(request)), json_dumps_params={"indent": 1})


def _program_error(request: HttpRequest, *, status: int, code: str, detail: str) -> JsonResponse | None:
    """A refusal in JSON where programs read it: OpenAI's shape on /v1/, the contract's on /api/; None elsewhere."""
    if request.path.startswith("/v1/"):
        return JsonResponse(compat.error_body(detail, status=status, code=code), status=status)
    if request.path.startswith("/api/"):
        return api.error_response(status, code, detail)
    return None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's own 400s (a form body over the limit, too many fields) in JSON on /api/ and /v1/, as programs expect."""
    if isinstance(exception, RequestDataTooBig):
        refusal = inputs.too_large()
    else:  # too many fields, a host not allowed, another request Django will not read
        refusal = inputs.InvalidInput(gettext("The request could not be read."))
    answer = _program_error(request, status=refusal.status, code=refusal.code, detail=refusal.detail)
    return answer or defaults.bad_request(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused CSRF check in JSON on /api/ and /v1/, where programs read it; the usual page elsewhere."""
    detail = apiauth.csrf_detail()
    answer = _program_error(request, status=403, code="csrf_failed", detail=detail)
    return answer or csrf.csrf_failure(request, reason=reason)
