"""Reading a file's text: UTF-8 with or without BOM, UTF-16, Windows-1251."""

import pytest

from core.services.recipients import clients_import

from .recipients import (
    CONSENT,
    _english,  # noqa: F401 (autouse: English messages)
    csv_bytes,
    owned,
    problems,
)

pytestmark = pytest.mark.django_db


def test_a_russian_excel_file_in_windows_1251_with_semicolons(client_user):
    data = csv_bytes(
        ["Электронная почта", "ФИО", "Примечание"],
        ["ivan@example.ru", "Фёдор Иванов", "Тёма; важный"],
        delimiter=";",
        encoding="cp1251",
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {"ivan@example.ru": ("Фёдор Иванов", "Тёма; важный")}


@pytest.mark.parametrize(
    "encoding, bom", [("utf-8", True), ("utf-8", False), ("utf-16", False)]
)
def test_unicode_files_with_and_without_bom(client_user, encoding, bom):
    data = csv_bytes(
        ["почта", "имя", "комментарий"],
        ["ivan@example.ru", "Иван", "ёлка"],
        encoding=encoding,
        bom=bom,
    )
    clients_import(owner=client_user, data=data, consent=CONSENT)
    assert owned(client_user) == {"ivan@example.ru": ("Иван", "ёлка")}


def test_a_spreadsheet_file_is_refused_as_not_text(client_user):
    xlsx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + b"x" * 200
    assert "not a text CSV file" in problems(xlsx, client_user)
