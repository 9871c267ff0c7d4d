"""Account pages beyond Django's own: a password change that can revoke every API token, and that button alone."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from chat import services


class PasswordChangeWithTokensForm(PasswordChangeForm):
    """Django's password change, plus the choice to revoke API tokens (on unless the user keeps them)."""

    revoke_tokens = forms.BooleanField(
        required=False,
        initial=True,
        label=gettext_lazy("Also revoke all my API tokens"),
        help_text=gettext_lazy(
            "A leaked token survives a new password unless it is revoked; programs then need new tokens."
        ),
    )


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change the password: other sessions' sockets end, and the tokens go too unless the user keeps them."""

    form_class = PasswordChangeWithTokensForm

    def form_valid(self, form: PasswordChangeWithTokensForm) -> HttpResponse:
        """Save the new password (Django keeps this session signed in), then revoke tokens if asked."""
        response = super().form_valid(form)
        if form.cleaned_data.get("revoke_tokens"):
            services.tokens_revoke_all(user=form.user)
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """The page also offers revoking every token without a new password."""
        return {**super().get_context_data(**kwargs), "live_tokens": self.request.user.api_tokens.active().count()}


@login_required
@require_POST
def tokens_revoke_all(request: HttpRequest) -> HttpResponse:
    """Revoke every API token of the signed-in user at once (a session and CSRF token are required)."""
    services.tokens_revoke_all(user=request.user)
    return redirect("chat:tokens")
