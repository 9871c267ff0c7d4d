"""Attachments in-process: what is read from each kind of file, every refusal, the context, storage and deletion.

The same rules through a real daphne and Redis are in tests/test_attachments_live.py.
"""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone
from django.utils.translation import override

from chat import attachments, prompt, services
from chat.models import Attachment, Conversation, Message
from tests.files import make_docx, make_encrypted_pdf, make_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _memory_storage(settings):
    """Files in memory: the tests go through Django's storage API, as an S3 backend would be used."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }


def _upload(user, name: str, data: bytes) -> Attachment:
    return services.attachment_create(owner=user, name=name, data=data)


def _refusal(user, name: str, data: bytes) -> services.ServiceError:
    with pytest.raises(services.ServiceError) as refused:
        _upload(user, name, data)
    return refused.value


@pytest.mark.parametrize(
    ("name", "data", "text"),
    [
        ("notes.txt", b"plain words\nline two", "plain words\nline two"),
        ("中文.md", "# 标题\n内容".encode("gb18030"), "# 标题\n内容"),  # as Chinese Windows saves text
        ("bom.csv", "\ufeffa,b\n1,2".encode(), "a,b\n1,2"),
        ("data.json", b'{"k": [1, 2]}', '{"k": [1, 2]}'),
        ("main.py", b"def f():\n    return 1\n", "def f():\n    return 1\n"),
        ("Dockerfile", b"FROM debian\n", "FROM debian\n"),
    ],
)
def test_text_code_and_data_files_are_read_as_they_are(user, name, data, text):
    attachment = _upload(user, name, data)
    assert (attachment.kind, attachment.text, attachment.size, attachment.name) == ("text", text, len(data), name)
    assert default_storage.open(attachment.file.name).read() == data  # stored through the storage API
    assert attachment.file.name == f"attachments/{user.pk}/{attachment.id}"  # never the user's name on disk


def test_a_pdf_is_read_page_by_page_and_a_docx_paragraph_by_paragraph(user):
    pdf = _upload(user, "report.pdf", make_pdf(["First page text", "Second page text"]))
    assert (pdf.kind, pdf.pages, pdf.content_type) == ("pdf", 2, "application/pdf")
    assert pdf.text == "[Page 1]\nFirst page text\n\n[Page 2]\nSecond page text"
    doc = _upload(user, "contract.docx", make_docx(["Clause one.", "第二条。"]))
    assert (doc.kind, doc.text) == ("docx", "Clause one.\n第二条。")


def test_every_refusal_names_its_limit_in_the_users_language(user, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 2000
    settings.CHAT_ATTACHMENT_MAX_PAGES = 2
    settings.CHAT_ATTACHMENT_MAX_CHARS = 100
    cases = {
        "attachment_too_large": ("big.txt", b"x" * 5000, "at most 2.0\xa0KB"),
        "attachment_too_many_pages": ("long.pdf", make_pdf(["a", "b", "c"]), "at most 2 pages"),
        "attachment_too_long": ("many.txt", b"y" * 101, "at most 100"),
        "attachment_type": ("photo.png", b"\x89PNG....", "photo.png"),
        "attachment_encrypted": ("locked.pdf", make_encrypted_pdf(), "password"),
        "attachment_broken": ("broken.pdf", b"%PDF-1.4 not really", "damaged"),
        "attachment_empty": ("empty.txt", b"", "empty"),
    }
    for code, (name, data, words) in cases.items():
        refused = _refusal(user, name, data)
        assert (refused.code, words in refused.detail) == (code, True), refused.detail
    with override("zh-hans"):
        assert "2.0\xa0KB" in _refusal(user, "big.txt", b"x" * 5000).detail
        assert "密码" in _refusal(user, "locked.pdf", make_encrypted_pdf()).detail
    assert not Attachment.objects.exists()
    assert not default_storage.listdir("attachments")[1] if default_storage.exists("attachments") else True


def test_a_docx_that_is_not_one_and_binary_named_as_text_are_refused(user):
    assert _refusal(user, "fake.docx", b"PK\x03\x04 nonsense").code == "attachment_broken"
    assert _refusal(user, "image.txt", b"\x00\x01\x02binary").code == "attachment_type"
    assert _refusal(user, "scan.pdf", make_pdf([""])).code == "attachment_empty"  # no text layer


def test_names_lose_folders_and_control_characters():
    assert attachments.clean_name("../../etc/pass\x00wd.txt") == "passwd.txt"
    assert attachments.clean_name("C:\\Users\\me\\notes.md") == "notes.md"
    assert attachments.clean_name("\ud800.txt") == ".txt"
    assert len(attachments.clean_name("a" * 400 + ".txt")) == 255


def _conversation(user) -> Conversation:
    return services.conversation_create(owner=user, thinking=False)


def test_a_sent_file_enters_the_context_with_a_header_naming_it(user, django_capture_on_commit_callbacks):
    conversation = _conversation(user)
    pdf = _upload(user, "report.pdf", make_pdf(["Revenue rose 12%"]))
    notes = _upload(user, "notes.txt", b"remember the milk")
    question, reply = services.message_send(
        conversation=conversation, content="Summarise", attachments=[pdf.id, notes.id]
    )
    assert [a.id for a in question.attachments.all()] == [pdf.id, notes.id]
    context = prompt.reply_context(message_id=reply.id)
    sent = context.request.messages[-1]["content"]
    assert sent == (
        '<file name="report.pdf", 1 pages>\n[Page 1]\nRevenue rose 12%\n</file>\n\n'
        '<file name="notes.txt">\nremember the milk\n</file>\n\nSummarise'
    )
    assert context.files_cut == ()


def test_sending_refuses_files_of_another_user_sent_ones_and_too_many(user, other_user, settings):
    conversation = _conversation(user)
    theirs = _upload(other_user, "theirs.txt", b"secret")
    with pytest.raises(services.ServiceError) as refused:
        services.message_send(conversation=conversation, content="look", attachments=[theirs.id])
    assert refused.value.code == "attachment_not_found"
    mine = _upload(user, "mine.txt", b"mine")
    services.message_send(conversation=conversation, content="one", attachments=[mine.id])
    Message.objects.filter(status="streaming").update(status="complete")
    with pytest.raises(services.ServiceError) as again:
        services.message_send(conversation=conversation, content="two", attachments=[mine.id])
    assert again.value.code == "attachment_not_found"
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 1
    files = [_upload(user, f"{i}.txt", b"x").id for i in range(2)]
    with pytest.raises(services.ServiceError) as many:
        services.message_send(conversation=conversation, content="three", attachments=files)
    assert (many.value.code, "at most 1 files" in many.value.detail) == ("too_many_attachments", True)
    assert conversation.messages.filter(role="user").count() == 1  # nothing stored for the refusals


def test_trimming_counts_files_and_cuts_the_newest_one_the_user_is_told(user, settings):
    settings.CHAT_CONTEXT_TOKENS = 400
    conversation = _conversation(user)
    old = _upload(user, "old.txt", b"o" * 600)
    services.message_send(conversation=conversation, content="first", attachments=[old.id])
    Message.objects.filter(status="streaming").update(status="complete", content="answer")
    big = _upload(user, "big.txt", b"b" * 3000)
    _, reply = services.message_send(conversation=conversation, content="second", attachments=[big.id])
    context = prompt.reply_context(message_id=reply.id)
    assert context.context_dropped == 2  # the older turn, its file with it
    (cut,) = context.files_cut
    assert cut["name"] == "big.txt" and cut["chars"] == 3000 and 0 < cut["kept"] < 3000
    sent = context.request.messages[-1]["content"]
    assert f"[The file was cut here to fit the context: {cut['kept']} of 3000 characters.]" in sent
    assert sum(prompt.estimate_tokens(m["content"]) for m in context.request.messages) <= 400
    services.reply_finish(
        message_id=reply.id, status="complete", content="ok", reasoning="", files_cut=list(context.files_cut)
    )
    reply.refresh_from_db()
    assert reply.files_cut == [cut]


def test_an_edited_message_keeps_its_files_and_deletion_keeps_a_file_a_copy_uses(
    user, django_capture_on_commit_callbacks
):
    conversation = _conversation(user)
    notes = _upload(user, "notes.txt", b"shared text")
    question, _ = services.message_send(conversation=conversation, content="v1", attachments=[notes.id])
    Message.objects.filter(status="streaming").update(status="complete", content="answer")
    reply = services.message_edit(conversation=conversation, message_id=question.id, content="v2")
    edited = reply.parent
    assert [a.name for a in edited.attachments.all()] == ["notes.txt"]
    with django_capture_on_commit_callbacks(execute=True):
        question.delete()  # the old branch goes (as a cascade would): the copy still needs the file
    assert default_storage.exists(notes.file.name)
    with django_capture_on_commit_callbacks(execute=True):
        services.conversation_delete(conversation=conversation)
    assert not default_storage.exists(notes.file.name)


def test_retention_user_deletion_and_unsent_files_remove_stored_files(
    user, other_user, settings, django_capture_on_commit_callbacks
):
    conversation = _conversation(user)
    sent = _upload(user, "sent.txt", b"kept with its conversation")
    services.message_send(conversation=conversation, content="hi", attachments=[sent.id])
    Message.objects.filter(status="streaming").update(status="complete")
    unsent = _upload(user, "unsent.txt", b"never sent")
    Attachment.objects.filter(id=unsent.id).update(created_at=timezone.now() - timezone.timedelta(hours=25))
    Conversation.objects.filter(id=conversation.id).update(updated_at=timezone.now() - timezone.timedelta(days=40))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_conversations", "--days", "30", stdout=io.StringIO())
    assert not default_storage.exists(sent.file.name) and not default_storage.exists(unsent.file.name)
    theirs = _upload(other_user, "theirs.txt", b"their file")
    with django_capture_on_commit_callbacks(execute=True):
        services.user_delete(user=other_user)
    assert not default_storage.exists(theirs.file.name)
    assert not Attachment.objects.exists()


def test_unsent_files_are_bounded_and_removable_but_sent_ones_are_not(user, settings):
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 1
    first = _upload(user, "1.txt", b"1")
    for i in range(3):
        _upload(user, f"{i}.txt", b"x")
    assert _refusal(user, "5.txt", b"x").code == "too_many_attachments"
    services.attachment_delete(attachment=first)
    _upload(user, "5.txt", b"x")
    conversation = _conversation(user)
    mine = Attachment.objects.filter(owner=user).first()
    services.message_send(conversation=conversation, content="hi", attachments=[mine.id])
    with pytest.raises(services.ServiceError) as refused:
        services.attachment_delete(attachment=Attachment.objects.get(id=mine.id))
    assert refused.value.code == "attachment_in_use"


def test_the_admin_transcript_shows_each_file_escaped_with_the_text_the_model_read(user, client):
    from django.contrib.auth.models import User

    staff = User.objects.create_user("reviewer", password="x", is_staff=True, is_superuser=True)
    client.force_login(staff)
    conversation = _conversation(user)
    hostile = _upload(user, "<img src=x onerror=alert(1)>.txt", b"<script>alert(2)</script> the text")
    pdf = _upload(user, "report.pdf", make_pdf(["one", "two"]))
    services.message_send(conversation=conversation, content="look", attachments=[hostile.id, pdf.id])
    page = client.get(f"/admin/chat/conversation/{conversation.id}/change/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;.txt · 34\xa0bytes" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt; the text" in page and "<script>alert(2)" not in page
    assert "report.pdf · " in page and " · 2 pages" in page
