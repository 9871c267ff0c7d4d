"""Page and API routes of the chat app."""

from django.urls import path
from django.views.i18n import JavaScriptCatalog

from chat import api, v1, views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("language/", views.language_set, name="language_set"),
    path("jsi18n/", JavaScriptCatalog.as_view(domain="djangojs"), name="javascript_catalog"),
    path("c/new/", views.conversation_new, name="conversation_new"),
    path("c/<uuid:conversation_id>/", views.conversation_page, name="conversation"),
    path("api/conversations/", api.conversations, name="api_conversations"),
    path("api/usage/", api.usage, name="api_usage"),
    path("api/tokens/", api.api_tokens, name="api_tokens"),
    path("api/tokens/<int:token_id>/", api.api_token, name="api_token"),
    path("accounts/tokens/", views.tokens_page, name="tokens"),
    path("accounts/settings/", views.settings_page, name="settings"),
    path("api/conversations/<uuid:conversation_id>/", api.conversation, name="api_conversation"),
    path("api/conversations/<uuid:conversation_id>/messages/", api.messages, name="api_messages"),
    path("api/conversations/<uuid:conversation_id>/events/", api.conversation_events, name="api_events"),
    path("api/conversations/<uuid:conversation_id>/stop/", api.stop, name="api_stop"),
    path("api/conversations/<uuid:conversation_id>/export/", api.export, name="api_export"),
    path("api/schema/", views.api_schema, name="api_schema"),
    path("docs/api/", views.api_docs, name="api_docs"),
    path("v1/models", v1.models, name="v1_models"),
    path("v1/models/<str:model_id>", v1.model, name="v1_model"),
    path("v1/chat/completions", v1.chat_completions, name="v1_chat_completions"),
]
