"""Create the superuser from SUPERUSER_EMAIL/SUPERUSER_PASSWORD, flags or a prompt."""

import getpass
import sys

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email


class Command(BaseCommand):
    help = (
        "Create a superuser. The e-mail and password come from --email and "
        "--password, else from SUPERUSER_EMAIL and SUPERUSER_PASSWORD, else "
        "from a prompt. If the user already exists, nothing changes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", help="e-mail address to log in with")
        parser.add_argument("--password", help="password (prefer the environment)")
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="never prompt; fail if the e-mail or password is missing",
        )

    def handle(self, *args, email=None, password=None, interactive=True, **options):
        User = get_user_model()
        email = email or settings.SUPERUSER_EMAIL
        password = password or settings.SUPERUSER_PASSWORD
        can_prompt = interactive and sys.stdin.isatty()
        if not email:
            if not can_prompt:
                raise CommandError("No e-mail: pass --email or set SUPERUSER_EMAIL.")
            email = input("E-mail: ").strip()
        email = User.objects.normalize_email(email)
        try:
            validate_email(email)
        except ValidationError as error:
            raise CommandError(f"{email!r} is not a valid e-mail address.") from error

        existing = User.objects.with_email(email).first()
        if existing is not None:
            state = (
                "a superuser" if existing.is_superuser else "a user, not a superuser"
            )
            self.stdout.write(
                f"{existing.email} already exists ({state}); nothing was changed."
            )
            return

        if not password:
            if not can_prompt:
                raise CommandError(
                    "No password: pass --password or set SUPERUSER_PASSWORD."
                )
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords do not match.")
        try:
            password_validation.validate_password(password, User(email=email))
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error

        User.objects.create_superuser(email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Superuser {email} created."))
