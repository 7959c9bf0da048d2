"""One step of bench/bench_compare.py inside the throw-away project.

Runs with the interpreter of var/bench/venv-compare, in the temporary
directory that holds manage.py, settings.py, urls.py, config.json, the
mailing's templates and one recipients-<tag>.json per batch:

    python runner.py PHASE '{"tag": "zdm"}'

PHASE is versions, migrate, queue (the batch becomes due mail) or outcome
(what the app recorded after sending); BENCH_APP says which app
(post_office or newsletter). The sending itself is the app's own command,
which bench_compare.py runs as `python manage.py ...`. The last line printed
is the phase's figures as JSON.
"""

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
APP = os.environ["BENCH_APP"]
PACKAGES = {"post_office": "django-post-office", "newsletter": "django-newsletter"}


def setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    import django

    django.setup()


def batch(tag: str) -> dict:
    """{"title", "list_id", "reply_to", "recipients": [[email, name, to, url]]}.

    `to` is the address with the name, as the project writes it; `url` the
    recipient's unsubscribe link.
    """
    return json.loads((BASE_DIR / f"recipients-{tag}.json").read_text())


def phase_versions() -> dict:
    from importlib.metadata import version

    return {"django": version("Django"), "app": version(PACKAGES[APP])}


def phase_migrate() -> dict:
    setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if APP == "newsletter":
        from django.contrib.sites.models import Site

        # Links in the messages use the same origin as the project's.
        Site.objects.filter(pk=1).update(
            domain=json.loads((BASE_DIR / "config.json").read_text())["site_domain"]
        )
    return {}


# --- django-post-office -----------------------------------------------------


def post_office_queue(tag: str) -> dict:
    """`mail.send_many()` with a template and each recipient's context."""
    from post_office import mail
    from post_office.models import EmailTemplate

    data = batch(tag)
    content = json.loads((BASE_DIR / "config.json").read_text())["content"]
    template, _ = EmailTemplate.objects.get_or_create(
        name="weekly",
        defaults={
            "subject": content["subject"],
            "content": content["body"],
            "html_content": content["html_body"],
        },
    )
    started = time.perf_counter()
    emails = mail.send_many(
        [
            {
                "recipients": [recipient],
                "template": template,
                "context": {
                    "client": {"full_name": name, "email": email},
                    "mailing": {"title": data["title"]},
                    "unsubscribe_url": url,
                },
                "headers": {
                    "List-Id": data["list_id"],
                    "List-Unsubscribe": f"<{url}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "Reply-To": data["reply_to"],
                },
            }
            for email, name, recipient, url in data["recipients"]
        ]
    )
    return {"seconds": time.perf_counter() - started, "queued": len(emails)}


def post_office_outcome(tag: str) -> dict:
    """What became of the batch's e-mails after `send_queued_mail`."""
    from django.db.models import Count
    from post_office.models import STATUS, Email

    emails = Email.objects.filter(to__contains=f".{tag}@")
    statuses = dict(
        emails.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    names = dict(zip(STATUS, STATUS._fields, strict=True))
    return {
        "sent": emails.filter(status=STATUS.sent).count(),
        "statuses": {str(names.get(k, k)): n for k, n in statuses.items()},
    }


# --- django-newsletter ------------------------------------------------------


def newsletter_queue(tag: str) -> dict:
    """A newsletter, its subscribers, a message and a prepared submission."""
    from email.utils import parseaddr

    from django.utils import timezone
    from newsletter.models import Message, Newsletter, Submission, Subscription

    data = batch(tag)
    sender_name, sender_email = parseaddr(
        json.loads((BASE_DIR / "config.json").read_text())["from_email"]
    )
    started = time.perf_counter()
    newsletter = Newsletter.objects.create(
        title=data["title"],
        slug=f"news-{tag}",
        email=sender_email,
        sender=sender_name,
        send_html=True,
    )
    now = timezone.now()
    Subscription.objects.bulk_create(
        (
            Subscription(
                newsletter=newsletter,
                email_field=email,
                name_field=name,
                subscribed=True,
                subscribe_date=now,
            )
            for email, name, _, _ in data["recipients"]
        ),
        batch_size=1000,
    )
    message = Message.objects.create(
        title=data["title"], slug=f"issue-{tag}", newsletter=newsletter
    )
    submission = Submission.from_message(message)
    # What the admin's "submit" action does; due a second ago.
    Submission.objects.filter(pk=submission.pk).update(
        prepared=True, publish_date=now - timedelta(seconds=1)
    )
    return {
        "seconds": time.perf_counter() - started,
        "queued": submission.subscriptions.count(),
    }


def newsletter_outcome(tag: str) -> dict:
    """Whether the submission is marked sent after `submit_newsletter`.

    It records no outcome per recipient (and logs failed sends only): what
    arrived is counted at the sink.
    """
    from newsletter.models import Submission

    submission = Submission.objects.get(message__slug=f"issue-{tag}")
    return {"sent": None, "statuses": {"submission sent": submission.sent}}


STEPS = {
    "post_office": {
        "queue": post_office_queue,
        "outcome": post_office_outcome,
    },
    "newsletter": {
        "queue": newsletter_queue,
        "outcome": newsletter_outcome,
    },
}


def main(phase: str, arguments: dict) -> dict:
    if phase == "versions":
        return phase_versions()
    if phase == "migrate":
        return phase_migrate()
    setup()
    return STEPS[APP][phase](**arguments)


if __name__ == "__main__":
    figures = main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    print(json.dumps(figures), flush=True)
