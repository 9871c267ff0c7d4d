"""Account changes that must reach open sockets: logging out, a new password, deactivation, deletion.

Receivers of Django's signals tell the user's sockets (through `chat.events`) and revoke the tokens
of a deactivated account; `session_holds` is the check a socket makes before it acts for a session.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat import events, services


def session_holds(*, session_key: str | None, user_id: int) -> bool:
    """Whether this session still belongs to this user: not logged out, same password, account active."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    # Django's own check: the session exists, names this user, its password hash matches, and the
    # account may log in (is_active).
    user = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return bool(user.is_authenticated and user.pk == user_id)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """The sockets of the session that logged out close."""
    if user is not None and request is not None:
        events.sessions_changed_on_commit(user_id=user.pk, session_key=request.session.session_key)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A new password or a deactivated account: every socket of the user closes and must sign in again."""
    if created:
        return
    # AbstractBaseUser keeps the new raw password in `_password` from set_password() until its save()
    # has finished, so it is set here exactly when the password was changed.
    password_changed = getattr(instance, "_password", None) is not None
    if not instance.is_active:
        services.tokens_revoke_all(user=instance)
    if password_changed or not instance.is_active:
        events.sessions_changed_on_commit(user_id=instance.pk)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A deleted account's sockets close."""
    events.sessions_changed_on_commit(user_id=instance.pk)
