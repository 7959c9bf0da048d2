"""The seed's management commands, as its README spells them."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone, translation

from core.models import MailingRun, User

from .factories import MailingFactory, due_mailing, people

pytestmark = pytest.mark.django_db

STRONG = "Long-enough-passphrase-7"


def test_create_custom_super_user_from_the_environment(settings, capsys):
    settings.SUPERUSER_EMAIL = "Admin@Example.com"
    settings.SUPERUSER_PASSWORD = STRONG
    call_command("create_custom_super_user", "--no-input")
    admin = User.objects.get()
    assert admin.email == "admin@example.com"
    assert admin.is_superuser and admin.is_staff and admin.is_verified
    assert admin.check_password(STRONG)
    assert "created" in capsys.readouterr().out


def test_create_custom_super_user_twice_changes_nothing(capsys):
    call_command("create_custom_super_user", email="boss@example.com", password=STRONG)
    capsys.readouterr()
    call_command(
        "create_custom_super_user", email="BOSS@example.com", password="other-pass-99"
    )
    out = capsys.readouterr().out
    assert "already exists" in out
    assert User.objects.count() == 1
    assert User.objects.get().check_password(STRONG)


def test_create_custom_super_user_refuses_bad_input_clearly(settings):
    settings.SUPERUSER_EMAIL = ""
    with pytest.raises(CommandError, match="SUPERUSER_EMAIL"):
        call_command("create_custom_super_user", "--no-input")
    with pytest.raises(CommandError, match="not a valid e-mail"):
        call_command("create_custom_super_user", email="nope", password=STRONG)
    with translation.override("en"), pytest.raises(CommandError, match="too short"):
        call_command("create_custom_super_user", email="a@example.com", password="123")
    assert not User.objects.exists()


def test_create_user_group_as_the_seed_readme_spells_it(capsys):
    call_command(
        "create_user_group",
        "managers",
        "set_user_active_status",
        "view_user",
    )
    call_command("create_user_group", "managers", "set_user_active_status")
    group = Group.objects.get(name="managers")
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert {"set_user_active_status", "view_user"} <= codenames


def test_create_user_group_creates_a_new_group_and_accepts_dotted_names():
    call_command("create_user_group", "auditors", "core.view_user")
    perms = Group.objects.get(name="auditors").permissions.all()
    assert [p.codename for p in perms] == ["view_user"]


def test_create_user_group_names_close_matches_for_a_typo():
    with pytest.raises(CommandError) as error:
        call_command("create_user_group", "auditors", "view_user", "set_user_activ")
    assert "set_user_active_status" in str(error.value)
    assert not Group.objects.filter(name="auditors").exists()


def test_roles_exist_after_migrations_with_their_permissions():
    managers = Group.objects.get(name="managers")
    codenames = set(managers.permissions.values_list("codename", flat=True))
    assert {"view_user", "set_user_active_status"} <= codenames
    assert Group.objects.filter(name="clients").exists()


def test_roles_can_be_ensured_again_without_change():
    from core.services.roles import roles_ensure

    before = {
        g.name: set(g.permissions.values_list("pk", flat=True))
        for g in Group.objects.all()
    }
    roles_ensure()
    after = {
        g.name: set(g.permissions.values_list("pk", flat=True))
        for g in Group.objects.all()
    }
    assert before == after


# --- send_scheduled_emails ------------------------------------------------


@pytest.fixture
def english():
    """The command speaks the service's language; asserted in English."""
    with translation.override("en"):
        yield


def test_command_dry_run_shows_and_writes_nothing(owner, smtp_server, capsys, english):
    due_mailing(owner, people(owner, 3), title="Распродажа")
    call_command("send_scheduled_emails", "--dry-run")
    out = capsys.readouterr().out
    assert "Распродажа" in out and "3 recipient(s)" in out
    assert not MailingRun.objects.exists() and smtp_server.messages == []


def test_command_keeps_what_it_loaded_out_of_the_collectors_passes(owner, english):
    """What the process loaded lives as long as it does: the collections
    while sending, and the one at exit, need not walk it."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    call_command("send_scheduled_emails")
    assert gc.get_freeze_count() > 10_000  # Django, the apps and their modules


def test_command_sends_one_mailing_now_and_summarises(
    owner, smtp_server, capsys, english
):
    later = MailingFactory(
        owner=owner,
        clients=people(owner, 2),
        start_at=timezone.now() + timedelta(days=7),
    )
    call_command("send_scheduled_emails", "--mailing", str(later.pk))
    out = capsys.readouterr().out
    assert "sent 2" in out and "failed 0" in out
    later.refresh_from_db()
    assert later.next_run_at is None  # a one-off mailing is done by it
    assert len(smtp_server.messages) == 2


def test_command_refuses_an_unknown_mailing(english):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no mailing with id 999"):
        call_command("send_scheduled_emails", "--mailing", "999")


@pytest.mark.parametrize("switch", ["mailing", "owner"])
def test_command_refuses_to_send_what_nothing_may_be_sent_of(owner, switch, english):
    mailing = MailingFactory(owner=owner, clients=people(owner, 2))
    if switch == "mailing":
        mailing.is_enabled = False
        mailing.save()
    else:
        owner.is_active = False
        owner.save()
    with pytest.raises(CommandError, match=f"Mailing {mailing.pk} is not sent"):
        call_command("send_scheduled_emails", "--mailing", str(mailing.pk))
    assert not MailingRun.objects.exists()


def test_command_speaks_russian_by_default(owner):
    mailing = MailingFactory(owner=owner, clients=people(owner, 1), is_enabled=False)
    with pytest.raises(CommandError) as refused:
        call_command("send_scheduled_emails", "--mailing", str(mailing.pk))
    assert str(refused.value) == (
        f"Рассылка {mailing.pk} не отправлена: Рассылка отключена менеджером."
    )
