"""The Russian catalogue is complete, and Russian pages show no English."""

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from .factories import (
    AttemptFactory,
    ClientFactory,
    MailingFactory,
    MailingRunFactory,
    UserFactory,
)

BASE_DIR = Path(__file__).resolve().parents[2]
PO_FILE = BASE_DIR / "core" / "locale" / "ru" / "LC_MESSAGES" / "django.po"


def catalogue_entries(path=PO_FILE):
    """(flags, msgid, msgstrs) for every entry but the header."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        flags, fields, current = set(), {}, None
        for line in block.splitlines():
            if line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#"):
                continue
            elif line.startswith('"') and current:
                fields[current] += _unquote(line)
            elif " " in line:
                current, _, value = line.partition(" ")
                fields[current] = _unquote(value)
        if fields.get("msgid"):
            strs = [v for k, v in fields.items() if k.startswith("msgstr")]
            entries.append((flags, fields["msgid"], strs))
    return entries


def _unquote(value: str) -> str:
    return (
        value.strip()[1:-1]
        .encode()
        .decode("unicode_escape")
        .encode("latin-1")
        .decode("utf-8")
    )


def test_every_message_is_translated_and_none_is_fuzzy():
    entries = catalogue_entries()
    assert len(entries) > 300
    untranslated = [msgid for _, msgid, strs in entries if not all(strs)]
    fuzzy = [msgid for flags, msgid, _ in entries if "fuzzy" in flags]
    assert untranslated == [], f"untranslated: {untranslated[:10]}"
    assert fuzzy == [], f"fuzzy: {fuzzy[:10]}"


@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which("xgettext"), reason="GNU gettext (xgettext) is not installed"
)
def test_catalogue_holds_every_string_of_the_code(tmp_path):
    """A string marked in the code but missing from the catalogue fails here."""
    copy = tmp_path / "project"
    shutil.copytree(
        BASE_DIR,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", "var", ".git", "node_modules", "test-artifacts", "__pycache__"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "-l",
            "ru",
            "--no-obsolete",
            "--ignore",
            "bench/*",
            "-v",
            "0",
        ],
        cwd=copy,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "ENV_FILE": "/dev/null",
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DEBUG": "True",  # development mode, as `make run`
            "PYTHONPATH": str(copy),
        },
    )
    fresh = {
        msgid
        for _, msgid, _ in catalogue_entries(
            copy / "core" / "locale" / "ru" / "LC_MESSAGES" / "django.po"
        )
    }
    ours = {msgid for _, msgid, _ in catalogue_entries()}
    assert sorted(fresh - ours) == [], "run `make messages` and translate"


# --- pages rendered in Russian --------------------------------------------------

# Scripts, styles, form values, and column names quoted as code are not prose.
SKIP_TAGS = re.compile(r"<(script|style|textarea|code)\b.*?</\1>", re.S | re.I)
QUOTED = re.compile(r"“[^”]*”|«[^»]*»")
TAG = re.compile(r"<[^>]+>")


def visible_text(page: str) -> str:
    return QUOTED.sub(" ", html.unescape(TAG.sub(" ", SKIP_TAGS.sub(" ", page))))


LANGUAGE_NAMES = {"English", "Russian"}


def english_leftovers(text: str) -> list[str]:
    """Our English source strings that appear as they are on a Russian page."""
    found = []
    for _, msgid, strs in catalogue_entries():
        if "%(" in msgid or "\n" in msgid or msgid in strs:
            continue  # placeholders, multi-line, or the same in both languages
        if msgid in LANGUAGE_NAMES:
            continue  # the language menu names each language in its own tongue
        if len(msgid) < 4 or not re.search("[A-Za-z]{3}", msgid):
            continue
        if re.search(rf"(?<![\w@.-]){re.escape(msgid)}(?![\w@.-])", text):
            found.append(msgid)
    return found


@pytest.fixture
def russian_world(db):
    owner = UserFactory(
        email="olga@primer.ru", full_name="Ольга", verified=True, groups=["clients"]
    )
    recipient = ClientFactory(owner=owner, email="ivan@primer.ru", full_name="Иван")
    mailing = MailingFactory(owner=owner, title="Осень", clients=[recipient])
    run = MailingRunFactory(mailing=mailing)
    AttemptFactory(
        run=run, client=recipient, email=recipient.email, server_response="250 2.0.0"
    )
    return owner, recipient, mailing, run


PUBLIC = ["home", "signup", "login", "verify_resend", "password_reset", "blog"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", PUBLIC)
def test_public_pages_in_russian_show_no_english(client, name):
    text = visible_text(client.get(reverse(name)).content.decode())
    assert english_leftovers(text) == []


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["client", "manager", "superuser"])
def test_admin_pages_in_russian_show_no_english(client, russian_world, role):
    owner, recipient, mailing, run = russian_world
    user = {
        "client": owner,
        "manager": UserFactory(email="m@primer.ru", verified=True, groups=["managers"]),
        "superuser": UserFactory(email="s@primer.ru", verified=True, is_superuser=True),
    }[role]
    client.force_login(user)
    paths = [
        "/admin/",
        reverse("admin:core_client_changelist"),
        reverse("admin:core_client_change", args=[recipient.pk]),
        reverse("admin:core_message_changelist"),
        reverse("admin:core_message_change", args=[mailing.message.pk]),
        reverse("admin:core_message_preview", args=[mailing.message.pk]),
        reverse("admin:core_mailing_changelist"),
        reverse("admin:core_mailing_change", args=[mailing.pk]),
        reverse("admin:core_mailingrun_changelist"),
        reverse("admin:core_attempt_changelist"),
        reverse("admin:core_article_changelist"),
    ]
    if role == "client":
        paths += [
            reverse("admin:core_client_add"),
            reverse("admin:core_mailing_add"),
            reverse("admin:core_client_import"),
            reverse("admin:core_article_add"),
        ]
    else:
        paths += [reverse("admin:core_user_changelist")]
    problems = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, path
        leftovers = english_leftovers(visible_text(response.content.decode()))
        if leftovers:
            problems[path] = leftovers
    assert problems == {}
