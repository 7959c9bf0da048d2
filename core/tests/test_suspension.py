"""A manager's per-client switch, "suspend sending", honoured by every door."""

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import translation

from core.models import Attempt, Mailing, MailingRun, User
from core.services.dispatch import (
    NotSendable,
    dispatch_deliver,
    dispatch_tick,
    run_open_now,
)
from core.services.messages import message_send_test

from .factories import MessageFactory, UserFactory, due_mailing, people

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        yield


def suspend(client, manager, users, reason="Spam complaints"):
    client.force_login(manager)
    url = reverse("admin:core_user_changelist")
    ids = [str(user.pk) for user in users]
    page = client.post(url, {"action": "suspend_sending", "_selected_action": ids})
    assert page.status_code == 200 and 'id="suspend-users"' in page.content.decode()
    return client.post(
        url,
        {
            "action": "suspend_sending",
            "_selected_action": ids,
            "apply": "1",
            "reason": reason,
        },
        follow=True,
    )


def test_a_copy_of_a_disabled_mailing_is_not_sent_once_its_owner_is_suspended(
    client, manager, owner, smtp_server, mailoutbox
):
    recipients = people(owner, 3)
    disabled = due_mailing(owner, recipients)
    Mailing.objects.filter(pk=disabled.pk).update(is_enabled=False)
    copy = due_mailing(owner, recipients, message=disabled.message)
    suspend(client, manager, [owner])

    assert dispatch_tick().sent == 0
    with pytest.raises(NotSendable, match="suspended by a manager: Spam complaints"):
        run_open_now(mailing_id=copy.pk)
    with pytest.raises(CommandError, match="Spam complaints"):
        call_command("send_scheduled_emails", "--mailing", str(copy.pk))
    owner.refresh_from_db()
    sent, error = message_send_test(message=copy.message, to=owner.email)
    assert not sent and "Spam complaints" in error
    assert not smtp_server.messages and not mailoutbox
    assert not MailingRun.objects.exists()


def test_the_admins_send_now_says_why(client, manager, owner, smtp_server):
    mailing = due_mailing(owner, people(owner, 1))
    suspend(client, manager, [owner])
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_mailing_changelist"),
        {"action": "send_now", "_selected_action": [mailing.pk]},
        follow=True,
    )
    notes = [str(m) for m in response.context["messages"]]
    assert any(
        note.startswith("Not sent: ") and "Spam complaints" in note for note in notes
    )


def test_a_delivery_under_way_takes_nothing_more_of_a_suspended_owner(
    client, manager, owner, smtp_server
):
    other = UserFactory(verified=True, groups=["clients"])
    mine = due_mailing(owner, people(owner, 3))
    theirs = due_mailing(other, people(other, 2))
    run_open_now(mailing_id=mine.pk)
    run_open_now(mailing_id=theirs.pk)
    suspend(client, manager, [owner])

    dispatch_deliver()

    assert len(smtp_server.messages) == 2
    assert set(
        Attempt.objects.filter(owner=owner).values_list("status", flat=True)
    ) == {"queued"}


def test_suspension_is_logged_and_the_owner_reads_the_reason(client, manager, owner):
    response = suspend(client, manager, [owner], reason="Bought list")
    assert "Sending suspended for 1 user." in [
        str(m) for m in response.context["messages"]
    ]
    entry = LogEntry.objects.get(object_id=str(owner.pk))
    assert entry.user == manager and "Bought list" in entry.get_change_message()
    owner.refresh_from_db()
    assert (
        owner.sending_suspended_at and owner.sending_suspended_reason == "Bought list"
    )

    client.force_login(owner)
    page = client.get(reverse("admin:core_mailing_changelist"))
    assert "Sending is suspended by a manager: Bought list" in [
        str(m) for m in page.context["messages"]
    ]


def test_resumed_owner_sends_again_and_each_mailing_keeps_its_own_switch(
    client, manager, owner, smtp_server
):
    recipients = people(owner, 2)
    due_mailing(owner, recipients)
    suspend(client, manager, [owner])
    assert dispatch_tick().sent == 0
    client.post(
        reverse("admin:core_user_changelist"),
        {"action": "resume_sending", "_selected_action": [owner.pk]},
    )
    assert dispatch_tick().sent == 2
    assert LogEntry.objects.filter(change_message__contains="resumed").exists()


def test_nobody_suspends_a_manager_a_superuser_or_themself(client, manager):
    other_manager = UserFactory(verified=True, groups=["managers"])
    root = UserFactory(verified=True, is_superuser=True)
    response = suspend(client, manager, [other_manager, root, manager])
    assert any("Left unchanged" in str(m) for m in response.context["messages"])
    assert not User.objects.filter(sending_suspended_at__isnull=False).exists()


def test_a_client_cannot_suspend_anyone(client, owner):
    victim = UserFactory(verified=True, groups=["clients"])
    client.force_login(owner)
    client.post(
        reverse("admin:core_user_changelist"),
        {
            "action": "suspend_sending",
            "_selected_action": [victim.pk],
            "apply": "1",
            "reason": "x",
        },
    )
    victim.refresh_from_db()
    assert victim.sending_suspended_at is None


def test_message_preview_still_works_while_suspended(client, manager, owner):
    message = MessageFactory(owner=owner)
    suspend(client, manager, [owner])
    client.force_login(owner)
    page = client.get(reverse("admin:core_message_preview", args=[message.pk]))
    assert page.status_code == 200 and "error" not in page.context["preview"]
