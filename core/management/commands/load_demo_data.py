"""Load the demo data (fixtures/*.json) once, and never over anyone's rows."""

import json

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.models import User

FIXTURES_DIR = settings.BASE_DIR / "fixtures"
# The field naming the user each demo row belongs to.
OWNER_FIELDS = {"core.article": "author"}


class Command(BaseCommand):
    help = (
        "Load the demo users, recipients, messages, mailings and articles from "
        "fixtures/*.json into a service that has none of them yet. Once loaded "
        "they are left alone, deletions included (your changes stay); "
        "--reset restores them as shipped. Refuses, changing nothing, where a "
        "demo row's id is taken by another user's row."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="load again, restoring the demo rows as they shipped",
        )

    def handle(self, *args, reset=False, **options):
        files = sorted(FIXTURES_DIR.glob("*.json"))
        if not files:
            raise CommandError(f"No demo data: {FIXTURES_DIR} holds no .json files.")
        rows = [row for file in files for row in json.loads(file.read_text("utf-8"))]
        demo_emails = {
            row["fields"]["email"].lower()
            for row in rows
            if row["model"] == "core.user"
        }
        with transaction.atomic():
            if not reset and self._present(rows, demo_emails):
                self.stdout.write(
                    "The demo data is here already (some or all of it); "
                    "--reset loads it all as shipped."
                )
                return
            taken = self._taken(rows, demo_emails)
            if taken:
                clashes = "; ".join(
                    f"{model} {', '.join(map(str, pks))}" for model, pks in taken
                )
                raise CommandError(
                    "Not loaded: these demo rows' ids belong to other users' "
                    f"rows, which loading would overwrite: {clashes}"
                )
            call_command("loaddata", *map(str, files), verbosity=0)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded: {len(rows)} rows from "
                + ", ".join(file.name for file in files)
                + f". Demo logins ({len(demo_emails)}): "
                + ", ".join(sorted(demo_emails))
            )
        )

    def _present(self, rows, demo_emails) -> bool:
        """Whether any demo user is here (demo rows cannot be without one):
        then nothing is reloaded unasked, so no change or deletion is undone."""
        return User.objects.filter(email__in=demo_emails).exists()

    def _taken(self, rows, demo_emails) -> list:
        """(model, [ids]) of existing rows with a demo id and a non-demo owner."""
        taken = []
        for label, pks in sorted(_pks_by_model(rows).items()):
            model = apps.get_model(label)
            existing = model.objects.filter(pk__in=pks)
            owner = OWNER_FIELDS.get(label, "owner")
            if any(field.name == owner for field in model._meta.get_fields()):
                existing = existing.exclude(**{f"{owner}__email__in": demo_emails})
            # A model without an owner: any row with a demo id is someone's.
            clash = sorted(existing.values_list("pk", flat=True))
            if clash:
                taken.append((label, clash))
        return taken


def _pks_by_model(rows) -> dict:
    by_model = {}
    for row in rows:
        if "pk" in row:
            by_model.setdefault(row["model"], []).append(row["pk"])
    return by_model
