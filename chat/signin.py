"""Sign-in and sign-up throttled (chat/throttle.py): forms that count before they check, pages that answer 429."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse

from chat import throttle
from chat.limits import LimitExceeded


class ThrottledLoginMixin:
    """Counts every sign-in attempt before authenticate() runs, and resets the account's count when it passes."""

    refusal: LimitExceeded | None = None

    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username and password:
            try:
                throttle.count_login(request=self.request, username=username)
            except LimitExceeded as refusal:
                self.refusal = refusal
                raise ValidationError(refusal.detail, code="throttled") from None
        cleaned = super().clean()
        if username and self.get_user() is not None:
            throttle.login_succeeded(username=username)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """The site's sign-in form."""


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's sign-in form, so /admin/login/ is no way around the throttle."""


class SignupForm(UserCreationForm):
    """Django's sign-up form; when the address is throttled it shows only the refusal, validating nothing."""

    def __init__(self, *args: Any, refusal: LimitExceeded | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusal = refusal

    def full_clean(self) -> None:
        if self.refusal is None:
            super().full_clean()
            return
        # No validation, so a refused attempt learns nothing (such as whether a username is taken).
        self.cleaned_data = {}
        self._errors = ErrorDict({NON_FIELD_ERRORS: self.error_class([self.refusal.detail], error_class="nonfield")})


def signup_refusal(request: HttpRequest) -> LimitExceeded | None:
    """Count a sign-up attempt against its address; the refusal if the address has had too many."""
    try:
        throttle.count_signup(request=request)
    except LimitExceeded as refusal:
        return refusal
    return None


def refused(response: HttpResponse, refusal: LimitExceeded | None) -> HttpResponse:
    """A throttled form's page answers 429 with Retry-After, so scripts see the refusal too."""
    if refusal is not None:
        response.status_code = 429
        response["Retry-After"] = str(refusal.retry_after)
    return response


class LoginView(auth_views.LoginView):
    """Django's sign-in page with the throttled form."""

    authentication_form = ThrottledAuthenticationForm

    def form_invalid(self, form: ThrottledAuthenticationForm) -> HttpResponse:
        return refused(super().form_invalid(form), form.refusal)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's sign-in page (its form is throttled in chat/admin.py), answering 429 when refused."""
    response = admin.site.login(request)
    form = (getattr(response, "context_data", None) or {}).get("form")
    return refused(response, getattr(form, "refusal", None))
