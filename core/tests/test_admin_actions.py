"""What clients and managers do in the back office, and forged requests."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone, translation

from core.models import Client, Mailing, MailingRun, Message
from core.services.dispatch import dispatch_tick

from .factories import (
    ClientFactory,
    MailingFactory,
    MessageFactory,
    UserFactory,
    due_mailing,
    people,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def anna(db):
    return UserFactory(email="anna@example.com", verified=True, groups=["clients"])


@pytest.fixture
def boris(db):
    return UserFactory(email="boris@example.com", verified=True, groups=["clients"])


def changelist_action(client, model_name, action, pks):
    return client.post(
        reverse(f"admin:core_{model_name}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def mailing_form(message, clients, **extra):
    start = timezone.localtime() + timedelta(days=1)
    return {
        "title": "Осенняя распродажа",
        "message": message.pk,
        "clients": [c.pk for c in clients],
        "start_at_0": start.strftime("%d.%m.%Y"),
        "start_at_1": start.strftime("%H:%M:%S"),
        "end_at_0": "",
        "end_at_1": "",
        "periodicity": "weekly",
        **extra,
    }


# --- blocking users -------------------------------------------------------


def test_manager_blocks_and_unblocks_a_client_with_history(client, manager, anna):
    client.force_login(manager)
    changelist_action(client, "user", "block_users", [anna.pk])
    anna.refresh_from_db()
    assert not anna.is_active
    entry = LogEntry.objects.get(object_id=str(anna.pk), action_flag=CHANGE)
    assert entry.user == manager

    changelist_action(client, "user", "unblock_users", [anna.pk])
    anna.refresh_from_db()
    assert anna.is_active
    assert anna.is_verified  # unblocking never verifies or unverifies anyone
    assert LogEntry.objects.filter(object_id=str(anna.pk)).count() == 2


def test_blocking_ends_the_blocked_users_session(client, manager, anna):
    from django.test import Client as Browser

    annas_browser = Browser()
    annas_browser.force_login(anna)
    assert annas_browser.get("/admin/").status_code == 200
    client.force_login(manager)
    changelist_action(client, "user", "block_users", [anna.pk])
    assert annas_browser.get("/admin/").status_code == 302


def test_manager_cannot_block_self_superuser_or_another_manager(
    client, manager, superuser
):
    other_manager = UserFactory(verified=True, groups=["managers"])
    client.force_login(manager)
    response = changelist_action(
        client,
        "user",
        "block_users",
        [manager.pk, superuser.pk, other_manager.pk],
    )
    for user in (manager, superuser, other_manager):
        user.refresh_from_db()
        assert user.is_active
    warnings = [str(m) for m in response.context["messages"]]
    assert any(manager.email in text for text in warnings)


def test_manager_cannot_edit_a_user(client, manager, anna):
    client.force_login(manager)
    page = client.get(reverse("admin:core_user_change", args=[anna.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "pbkdf2" not in page.content.decode() and "md5" not in page.content.decode()
    response = client.post(
        reverse("admin:core_user_change", args=[anna.pk]),
        {"email": "hijacked@example.com", "is_active": "on"},
    )
    assert response.status_code == 403
    anna.refresh_from_db()
    assert anna.email == "anna@example.com"


def test_clients_cannot_reach_the_user_admin(client, anna, boris):
    client.force_login(anna)
    assert client.get(reverse("admin:core_user_changelist")).status_code == 403
    response = changelist_action(client, "user", "block_users", [boris.pk])
    assert response.status_code == 403
    boris.refresh_from_db()
    assert boris.is_active


# --- switching mailings ---------------------------------------------------


def test_manager_disables_a_mailing_and_its_owner_cannot_switch_it_back(
    client, manager, anna
):
    mailing = MailingFactory(owner=anna)
    client.force_login(manager)
    changelist_action(client, "mailing", "disable_mailings", [mailing.pk])
    mailing.refresh_from_db()
    assert not mailing.is_enabled
    assert mailing.status == Mailing.Status.DISABLED
    assert LogEntry.objects.filter(
        object_id=str(mailing.pk), user=manager, action_flag=CHANGE
    ).exists()

    client.force_login(anna)
    form = mailing_form(mailing.message, [], is_enabled="on", title="Снова включена")
    response = client.post(
        reverse("admin:core_mailing_change", args=[mailing.pk]), form
    )
    assert response.status_code == 302
    mailing.refresh_from_db()
    assert mailing.title == "Снова включена"
    assert not mailing.is_enabled
    changelist_action(client, "mailing", "enable_mailings", [mailing.pk])
    mailing.refresh_from_db()
    assert not mailing.is_enabled

    client.force_login(manager)
    changelist_action(client, "mailing", "enable_mailings", [mailing.pk])
    mailing.refresh_from_db()
    assert mailing.is_enabled


def test_manager_cannot_add_change_or_delete_others_rows(client, manager, anna):
    mailing = MailingFactory(owner=anna)
    recipient = ClientFactory(owner=anna)
    client.force_login(manager)
    change = client.post(
        reverse("admin:core_mailing_change", args=[mailing.pk]),
        mailing_form(mailing.message, [recipient], title="Подменено"),
    )
    delete = client.post(
        reverse("admin:core_client_delete", args=[recipient.pk]), {"post": "yes"}
    )
    add = client.post(reverse("admin:core_client_add"), {"email": "new@example.com"})
    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    changelist_action(client, "client", "delete_selected", [recipient.pk])
    mailing.refresh_from_db()
    assert mailing.title != "Подменено"
    assert Client.objects.filter(pk=recipient.pk).exists()
    assert not Client.objects.filter(email="new@example.com").exists()


# --- forged requests from another client -----------------------------------


def test_the_add_page_shows_a_new_mailing_as_created(client, anna):
    client.force_login(anna)
    with translation.override("en"):
        page = client.get(reverse("admin:core_mailing_add"), HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert '<span class="badge bg-secondary">created</span>' in page.content.decode()


def test_mailing_cannot_name_another_users_message_or_recipients(client, anna, boris):
    annas_message = MessageFactory(owner=anna)
    annas_recipient = ClientFactory(owner=anna)
    client.force_login(boris)
    response = client.post(
        reverse("admin:core_mailing_add"),
        mailing_form(annas_message, [annas_recipient]),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "message" in errors and "clients" in errors
    assert not Mailing.objects.exists()


def test_another_clients_forged_change_and_delete_touch_nothing(client, anna, boris):
    mailing = MailingFactory(owner=anna, title="Моя рассылка")
    recipient = ClientFactory(owner=anna)
    client.force_login(boris)
    boris_message = MessageFactory(owner=boris)
    change = client.post(
        reverse("admin:core_mailing_change", args=[mailing.pk]),
        mailing_form(boris_message, [], title="Чужая"),
    )
    delete = client.post(
        reverse("admin:core_client_delete", args=[recipient.pk]), {"post": "yes"}
    )
    assert change.status_code == delete.status_code == 302
    assert change.url == delete.url == reverse("admin:index")
    changelist_action(client, "client", "delete_selected", [recipient.pk])
    mailing.refresh_from_db()
    assert mailing.title == "Моя рассылка"
    assert Client.objects.filter(pk=recipient.pk).exists()


# --- what a client does with their own rows ---------------------------------


def test_client_adds_recipients_and_a_duplicate_in_any_case_is_refused(client, anna):
    client.force_login(anna)
    first = client.post(
        reverse("admin:core_client_add"),
        {"email": "Olga@Example.com", "full_name": "Ольга", "comment": ""},
    )
    assert first.status_code == 302
    olga = Client.objects.get()
    assert olga.owner == anna and olga.email == "olga@example.com"
    assert anna.has_perm("core.change_client", olga)

    again = client.post(reverse("admin:core_client_add"), {"email": "OLGA@example.com"})
    assert again.status_code == 200
    assert again.context["adminform"].form.errors["email"]
    assert Client.objects.count() == 1


def test_two_clients_may_keep_the_same_recipient(client, anna, boris):
    ClientFactory(owner=anna, email="shared@example.com")
    client.force_login(boris)
    response = client.post(
        reverse("admin:core_client_add"), {"email": "shared@example.com"}
    )
    assert response.status_code == 302
    assert Client.objects.filter(email="shared@example.com").count() == 2


def test_client_creates_a_mailing_which_waits_for_its_start(client, anna):
    message = MessageFactory(owner=anna)
    recipients = [ClientFactory(owner=anna) for _ in range(3)]
    client.force_login(anna)
    response = client.post(
        reverse("admin:core_mailing_add"), mailing_form(message, recipients)
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    mailing = Mailing.objects.get()
    assert mailing.owner == anna
    assert mailing.clients.count() == 3
    assert mailing.next_run_at == mailing.start_at
    assert mailing.status == Mailing.Status.CREATED
    assert anna.has_perm("core.delete_mailing", mailing)


def test_mailing_end_before_start_is_refused(client, anna):
    message = MessageFactory(owner=anna)
    client.force_login(anna)
    yesterday = timezone.localtime() - timedelta(days=1)
    response = client.post(
        reverse("admin:core_mailing_add"),
        mailing_form(
            message,
            [],
            end_at_0=yesterday.strftime("%d.%m.%Y"),
            end_at_1="10:00:00",
        ),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["end_at"]
    assert not Mailing.objects.exists()


def test_message_with_a_broken_template_is_refused_with_its_line(client, anna):
    client.force_login(anna)
    response = client.post(
        reverse("admin:core_message_add"),
        {
            "subject": "Привет",
            "body": "Первая строка\n{% if client.full_name %}\nбез конца",
            "html_body": "",
        },
    )
    assert response.status_code == 200
    error = response.context["adminform"].form.errors["body"][0]
    assert "2" in error
    assert not Message.objects.exists()


def test_message_cannot_include_files_or_load_tags(client, anna):
    client.force_login(anna)
    for body in ('{% include "core/base.html" %}', "{% load static %}"):
        response = client.post(
            reverse("admin:core_message_add"),
            {"subject": "x", "body": body, "html_body": ""},
        )
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["body"]
    assert not Message.objects.exists()


def test_message_preview_renders_for_a_sample_recipient(client, anna):
    ClientFactory(owner=anna, full_name="Ольга Смирнова", email="olga@example.com")
    message = MessageFactory(
        owner=anna,
        subject="Привет, {{ client.full_name }}",
        body="Здравствуйте, {{ client.full_name }}! {{ client.owner.password }}",
        html_body="<p>{{ client.full_name }}</p>",
    )
    client.force_login(anna)
    response = client.get(reverse("admin:core_message_preview", args=[message.pk]))
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview["subject"] == "Привет, Ольга Смирнова"
    # Nothing but the recipient's name and address reaches a template.
    assert preview["text"] == "Здравствуйте, Ольга Смирнова! "
    assert preview["html"] == "<p>Ольга Смирнова</p>"


def test_preview_of_another_users_message_is_missing(client, anna, boris):
    message = MessageFactory(owner=anna)
    client.force_login(boris)
    response = client.get(reverse("admin:core_message_preview", args=[message.pk]))
    assert response.status_code == 404


def test_send_a_test_email_to_me(client, anna, mailoutbox):
    message = MessageFactory(owner=anna, subject="Новости для {{ client.full_name }}")
    client.force_login(anna)
    response = client.post(
        reverse("admin:core_message_send_test", args=[message.pk]), follow=True
    )
    assert response.status_code == 200
    (mail,) = mailoutbox
    assert mail.to == [anna.email]
    assert "Новости для" in mail.subject
    assert any(anna.email in str(m) for m in response.context["messages"])


def test_test_email_that_the_server_refuses_is_reported(client, anna, settings):
    settings.EMAIL_BACKEND = "core.tests.test_accounts.RefusingBackend"
    message = MessageFactory(owner=anna)
    client.force_login(anna)
    response = client.post(
        reverse("admin:core_message_send_test", args=[message.pk]), follow=True
    )
    texts = [str(m) for m in response.context["messages"]]
    assert any("554" in text or "Transaction failed" in text for text in texts)


def test_manager_cannot_send_test_emails_of_others(client, manager, anna, mailoutbox):
    message = MessageFactory(owner=anna)
    client.force_login(manager)
    response = client.post(reverse("admin:core_message_send_test", args=[message.pk]))
    assert response.status_code == 403
    assert mailoutbox == []


# --- sending from the admin -------------------------------------------------


def test_send_now_from_the_admin(client, owner, smtp_server, inline_tasks):
    mailing = MailingFactory(
        owner=owner,
        clients=people(owner, 3),
        start_at=timezone.now() + timedelta(days=1),
    )
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_mailing_changelist"),
        {"action": "send_now", "_selected_action": [mailing.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert len(smtp_server.messages) == 3
    assert MailingRun.objects.get().sent_count == 3


def test_send_now_refuses_another_users_mailing(
    client, owner, smtp_server, inline_tasks
):
    other = UserFactory(verified=True, groups=["clients"])
    foreign = MailingFactory(owner=other, clients=[ClientFactory(owner=other)])
    client.force_login(owner)
    client.post(
        reverse("admin:core_mailing_changelist"),
        {"action": "send_now", "_selected_action": [foreign.pk]},
    )
    assert smtp_server.messages == [] and not MailingRun.objects.exists()


def test_retry_failed_recipients_from_the_report(
    client, owner, smtp_server, inline_tasks, settings
):
    settings.SMTP_MAX_RETRIES = 1
    recipients = people(owner, 3)
    smtp_server.recorder.reject[recipients[0].email] = "450 4.2.0 Mailbox full"
    due_mailing(owner, recipients)
    dispatch_tick()
    run = MailingRun.objects.get()
    assert run.failed_count == 1

    smtp_server.recorder.reject.clear()
    client.force_login(owner)
    client.post(
        reverse("admin:core_mailingrun_changelist"),
        {"action": "retry_failed", "_selected_action": [run.pk]},
    )
    run.refresh_from_db()
    assert (run.sent_count, run.failed_count, run.status) == (3, 0, "finished")
    assert smtp_server.recorder.count_by_address()[recipients[0].email] == 1


def test_send_now_of_a_mailing_switched_off_meanwhile_queues_no_run(
    owner, smtp_server, inline_tasks
):
    """The action checks the switch; a manager may turn it off before the
    worker gets to it, and then nothing waits, queued, for it."""
    from core import tasks

    mailing = MailingFactory(owner=owner, clients=people(owner, 2))
    Mailing.objects.filter(pk=mailing.pk).update(is_enabled=False)
    assert tasks.send_now(mailing.pk).startswith("not sent:")
    assert not MailingRun.objects.exists()
    assert smtp_server.messages == []


def test_send_now_of_a_mailing_deleted_meanwhile_says_so(owner, smtp_server):
    from core import tasks

    mailing = MailingFactory(owner=owner, clients=people(owner, 2))
    pk = mailing.pk
    mailing.delete()
    with translation.override("en"):
        assert tasks.send_now(pk) == "not sent: The mailing no longer exists."
    assert not MailingRun.objects.exists()


def test_preview_and_send_test_of_an_id_that_is_not_a_number_are_missing(client, anna):
    client.force_login(anna)
    assert client.get("/admin/core/message/abc/preview/").status_code == 404
    assert client.post("/admin/core/message/abc/send-test/").status_code == 404


def test_message_of_three_thousand_nested_ifs_is_refused_with_its_line(client, anna):
    client.force_login(anna)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        response = client.post(
            reverse("admin:core_message_add"),
            {"subject": "x", "body": "{% if client.email %}" * 3000, "html_body": ""},
        )
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["body"]
    assert error.startswith("Line 1:") and "nested" in error
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "{% for a in 'x'|ljust:'2000' %}{% for b in 'x'|ljust:'2000' %}"
        "{% for c in 'x'|ljust:'2000' %}.{% endfor %}{% endfor %}{% endfor %}",
        "{{ 'x'|ljust:'300000000' }}",
        "{% if client.email %}" * 3000,
        "{%" * 50_000,
    ],
)
def test_message_saved_before_the_language_was_bounded_is_flagged_and_not_sent(
    client, anna, body
):
    message = MessageFactory(owner=anna, body=body)
    client.force_login(anna)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        changelist = client.get(reverse("admin:core_message_changelist"))
        change = client.get(reverse("admin:core_message_change", args=[message.pk]))
        preview = client.get(reverse("admin:core_message_preview", args=[message.pk]))
    assert "text: Line 1:" in changelist.content.decode()
    (note,) = [str(m) for m in change.context["messages"]]
    assert note.startswith("This message is not sent until it is fixed.")
    assert preview.status_code == 200
    assert preview.context["preview"]["error"].startswith("text: Line 1:")


def test_message_with_an_unknown_variable_saved_earlier_is_flagged_but_sent(
    client, anna
):
    message = MessageFactory(owner=anna, body="Hi {{ client.phone }}!")
    client.force_login(anna)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    with translation.override("en"):
        change = client.get(reverse("admin:core_message_change", args=[message.pk]))
        preview = client.get(reverse("admin:core_message_preview", args=[message.pk]))
    (note,) = [str(m) for m in change.context["messages"]]
    assert "is sent with that part empty" in note and "client.phone" in note
    assert preview.context["preview"]["text"] == "Hi !"
    assert "client.phone" in preview.context["preview"]["problem"]
    assert 'id="preview-problem"' in preview.content.decode()


def test_send_now_of_a_message_that_may_not_be_sent_says_why(
    client, owner, smtp_server, inline_tasks
):
    message = MessageFactory(owner=owner, body="{{ 'x'|ljust:'300000000' }}")
    mailing = MailingFactory(owner=owner, message=message, clients=people(owner, 2))
    client.force_login(owner)
    response = client.post(
        reverse("admin:core_mailing_changelist"),
        {"action": "send_now", "_selected_action": [mailing.pk]},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    (note,) = [str(m) for m in response.context["messages"]]
    assert note.startswith("Not sent: ")
    assert "(the message must be fixed first: text: Line 1:" in note
    assert mailing.title in note and "ljust" in note
    assert not MailingRun.objects.exists() and not smtp_server.messages


@pytest.mark.parametrize(
    "field,day",
    [("start_at", "01.01.0001"), ("end_at", "31.12.9999")],
)
def test_mailing_dated_at_the_ends_of_the_calendar_is_refused_not_a_500(
    client, anna, field, day
):
    message = MessageFactory(owner=anna)
    client.force_login(anna)
    response = client.post(
        reverse("admin:core_mailing_add"),
        mailing_form(message, [], **{f"{field}_0": day, f"{field}_1": "00:30:00"}),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    assert not Mailing.objects.exists()
