"""Personal API tokens: shown once, stored as a hash, bearer auth on every endpoint, revocable."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.test import Client

from chat.models import ApiToken, Conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # sets the CSRF cookie
    return client


def make_token(session, name="script"):
    response = session.post(
        "/api/tokens/",
        json.dumps({"name": name}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=session.cookies["csrftoken"].value,
    )
    assert response.status_code == 201
    return response.json()


def bearer(token):
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_token_is_shown_once_and_stored_only_as_a_hash(session):
    created = make_token(session)
    assert set(created) >= {"id", "name", "token"}
    plain = created["token"]
    stored = ApiToken.objects.get(id=created["id"])
    assert stored.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in {getattr(stored, f.attname) for f in ApiToken._meta.fields if f.attname != "id"}
    listed = session.get("/api/tokens/").json()["tokens"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert plain not in json.dumps(listed)


def test_bearer_works_without_csrf_and_records_last_use(session, user):
    plain = make_token(session)["token"]
    program = bearer(plain)
    created = program.post("/api/conversations/", "{}", content_type="application/json")
    assert created.status_code == 201
    assert Conversation.objects.get(id=created.json()["id"]).owner == user
    assert program.get("/api/conversations/").status_code == 200
    assert program.get("/api/usage/").status_code == 200
    assert ApiToken.objects.get().last_used_at is not None
    assert session.get("/api/tokens/").json()["tokens"][0]["last_used_at"] is not None


def test_a_revoked_or_unknown_token_is_refused(session):
    created = make_token(session)
    response = session.delete(f"/api/tokens/{created['id']}/", HTTP_X_CSRFTOKEN=session.cookies["csrftoken"].value)
    assert response.status_code == 204
    for token in (created["token"], "dsc_not-a-real-token"):
        refused = bearer(token).get("/api/conversations/")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_token"
        assert refused["WWW-Authenticate"].startswith("Bearer")
    assert session.get("/api/tokens/").json()["tokens"] == []


def test_session_requests_still_need_the_csrf_token(session):
    response = session.post("/api/tokens/", json.dumps({"name": "x"}), content_type="application/json")
    assert response.status_code == 403


def test_another_users_token_cannot_be_revoked(session, other_user):
    created = make_token(session)
    intruder = Client()
    intruder.force_login(other_user)
    assert intruder.delete(f"/api/tokens/{created['id']}/").status_code == 404
    assert bearer(created["token"]).get("/api/conversations/").status_code == 200


def test_tokens_page_shows_a_new_token_once_and_revokes(user):
    client = Client()
    client.force_login(user)
    page = client.post("/accounts/tokens/", {"name": "laptop"}).content.decode()
    token = ApiToken.objects.get()
    assert 'id="new-token"' in page and "laptop" in page
    assert "not shown again" in page
    again = client.get("/accounts/tokens/").content.decode()
    assert 'id="new-token"' not in again and token.prefix in again
    client.post("/accounts/tokens/", {"revoke": token.id})
    token.refresh_from_db()
    assert token.revoked_at is not None
