"""Load the demo data (fixtures/*.json) once, and never over anyone's rows."""

import json

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from core.models import User

FIXTURES_DIR = settings.BASE_DIR / "fixtures"
# The field naming the user each demo row belongs to.
OWNER_FIELDS = {"core.article": "author"}


class Command(BaseCommand):
    help = (
        "Load the demo users, recipients, messages, mailings and articles from "
        "fixtures/*.json. Once loaded they are left alone (your changes stay); "
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
        present = User.objects.filter(email__in=demo_emails).count()
        if present == len(demo_emails) and not reset:
            self.stdout.write(
                "The demo data is loaded already; --reset restores it as shipped."
            )
            return
        taken = self._taken(rows, demo_emails)
        if taken:
            raise CommandError(
                "Not loaded: these demo rows' ids belong to other users' rows, "
                "which loading would overwrite: "
                + "; ".join(
                    f"{model} {', '.join(map(str, pks))}" for model, pks in taken
                )
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

    def _taken(self, rows, demo_emails) -> list:
        """(model, [ids]) of existing rows with a demo id and a non-demo owner."""
        taken = []
        by_model = {}
        for row in rows:
            if "pk" in row:
                by_model.setdefault(row["model"], []).append(row["pk"])
        for label, pks in sorted(by_model.items()):
            model = apps.get_model(label)
            owner = OWNER_FIELDS.get(label, "owner")
            clash = sorted(
                model.objects.filter(pk__in=pks)
                .exclude(**{f"{owner}__email__in": demo_emails})
                .values_list("pk", flat=True)
            )
            if clash:
                taken.append((label, clash))
        return taken
