"""Site routes: the admin, accounts, and the chat app."""

from django.contrib import admin
from django.urls import include, path

from chat import account_views, health, signin, views

urlpatterns = [
    path("admin/login/", signin.admin_login),  # before admin/: the same page, answering 429 when throttled
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/password_change/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/tokens/revoke-all/", account_views.tokens_revoke_all, name="tokens_revoke_all"),
    path("accounts/login/", signin.LoginView.as_view(), name="login"),  # throttled; before auth.urls
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("chat.urls")),
]

# Django's own 400s (too many fields, a form body over the limit) answer JSON on /api/ and /v1/.
handler400 = "chat.views.bad_request"
