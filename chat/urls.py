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
    path("accounts/tokens/", views.tokens_page, name="tokens"),
    path("accounts/settings/", views.settings_page, name="settings"),
    path("api/schema/", views.api_schema, name="api_schema"),
    path("api/", api.api.urls),
    path("docs/api/", views.api_docs, name="api_docs"),
    path("v1/", v1.api.urls),
]
