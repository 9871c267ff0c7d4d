"""Small, valid files built in memory for the tests of attachments: PDFs (plain and encrypted) and Word documents."""

from __future__ import annotations

import io


def _pdf_string(text: str) -> str:
    """A PDF literal string: Latin-1 text with its delimiters escaped (Helvetica's encoding has no CJK)."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    escaped.encode("latin-1")  # a character Helvetica cannot show fails here, not in the reader
    return f"({escaped})"


def make_pdf(pages: list[str]) -> bytes:
    """A PDF of one page per text (lines split on newlines) in Helvetica, written by hand with exact xref offsets."""
    assert pages, "a PDF has at least one page"
    objects: dict[int, bytes] = {}
    font = 3 + 2 * len(pages)
    kids = []
    for index, text in enumerate(pages):
        page, content = 3 + 2 * index, 4 + 2 * index
        kids.append(f"{page} 0 R")
        lines = text.split("\n")
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for number, line in enumerate(lines):
            ops.append(f"{_pdf_string(line)} Tj" if number == 0 else f"{_pdf_string(line)} '")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects[content] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        objects[page] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"
        ).encode()
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    count = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for number in range(1, count):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref)
    return bytes(out)


def make_encrypted_pdf(pages: list[str] | None = None, *, password: str = "secret") -> bytes:
    """The same PDF protected by a user password (RC4-128, which pypdf writes without extra libraries)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages or ["Locked text."]))))
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_docx(paragraphs: list[str]) -> bytes:
    """A Word document (.docx) with one paragraph per text, written by python-docx."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
