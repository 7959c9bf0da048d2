"""What the recipient import and export tests share: files, pages, rows."""

import codecs
import csv
import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation

from core.models import Client
from core.services.recipients import ClientImportError, ImportConsent, clients_import

# The owner's word that the people in a file agreed (an import needs it).
CONSENT = ImportConsent(text="They all agreed.", ip="192.0.2.1", user_agent="tests")

IMPORT_URL = reverse("admin:core_client_import")
CONFIRM_URL = reverse("admin:core_client_process_import")
EXPORT_URL = reverse("admin:core_client_export")
CHANGELIST_URL = reverse("admin:core_client_changelist")


@pytest.fixture(autouse=True)
def _english(client):
    """Messages are asserted in their English source form."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


def csv_bytes(*rows, delimiter=",", encoding="utf-8", bom=False):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    data = buffer.getvalue().encode(encoding)
    return codecs.BOM_UTF8 + data if bom else data


def problems(data, owner):
    with pytest.raises(ClientImportError) as error:
        clients_import(owner=owner, data=data, consent=CONSENT)
    return "\n".join(error.value.listing())


def owned(owner):
    return {
        c.email: (c.full_name, c.comment)
        for c in Client.objects.filter(owner=owner).order_by()
    }


def upload(client, data, name="recipients.csv"):
    # With the page's hidden "format" field, as a browser posts the form.
    return client.post(
        IMPORT_URL,
        {"import_file": SimpleUploadedFile(name, data, "text/csv"), "format": "0"},
    )


def confirm(client, response, **extra):
    """Confirm a checked upload, as the owner does: with their consent."""
    initial = response.context["confirm_form"].initial
    return client.post(CONFIRM_URL, {**initial, "consent": "on", **extra}, follow=True)


def exported(response):
    assert response.streaming
    body = b"".join(response.streaming_content)
    assert body.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"), newline="")))


# Each bad file, with the message that explains it; run through the service,
# the admin and the command.
BAD_FILES = [
    (b" \r\n\r\n", "The file is empty."),
    (b"email,full_name\n", "The file has a header row but no recipients."),
    (b"phone,name\n1,Anna\n", "The headers in the file are: “phone”, “name”"),
    (
        "email,name\na@example.com,Анна\n".encode()
        + "b@example.com,Борис\n".encode("cp1251"),
        "The file mixes text encodings: line 2 is UTF-8, line 3 is not.",
    ),
    (os.urandom(10 * 1024 * 1024), "This is not a text CSV file"),
    (
        b"email\nok@example.com\nnope\n\nal so@example.com\n",
        "Row 3: “nope” is not a valid e-mail address.",
    ),
    (b'email,name\na@example.com,"Anna\nb@example.com,B\n', "Row 2: the row is not"),
    (
        b"email,unsubscribed\na@example.com,01.01.0001\n",
        "Row 2: “01.01.0001” in the unsubscribed column is not a date we can keep.",
    ),
]
BAD_FILE_IDS = [
    "blank lines",
    "header only",
    "no e-mail column",
    "mixed encodings",
    "10 MB of random bytes",
    "invalid addresses",
    "unclosed quote",
    "a date before the calendar",
]
