"""Run one dispatch tick in the foreground, with progress and a summary."""

import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.models import Mailing
from core.services.dispatch import NotSendable, dispatch_plan, dispatch_tick


class Command(BaseCommand):
    help = (
        "Send every mailing that is due now (one tick of the scheduler), or "
        "one mailing at once with --mailing. --dry-run only shows what would go."
    )

    def add_arguments(self, parser):
        parser.add_argument("--mailing", type=int, help="send this mailing now")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be sent"
        )
        parser.add_argument(
            "--time-budget",
            type=float,
            default=None,
            help="stop delivering after this many seconds (default: no limit)",
        )

    def handle(self, *args, mailing=None, dry_run=False, time_budget=None, **opts):
        if mailing is not None and not Mailing.objects.filter(pk=mailing).exists():
            raise CommandError(f"There is no mailing with id {mailing}.")
        if dry_run:
            return self._dry_run(mailing)
        self.done = 0
        try:
            summary = dispatch_tick(
                mailing_id=mailing,
                time_budget=time_budget if time_budget is not None else 10**9,
                progress=self._progress,
            )
        except NotSendable as refusal:
            raise CommandError(f"Mailing {mailing} is not sent: {refusal}") from None
        if self.done:
            self.stderr.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"runs {summary.runs} (missed occurrences recorded as skipped: "
                f"{summary.skipped_runs}), sent {summary.sent}, failed "
                f"{summary.failed}, skipped {summary.skipped}, unknown "
                f"{summary.unknown}, waiting to retry {summary.retried}"
            )
        )

    def _progress(self, batch):
        self.done += batch.sent + batch.failed + batch.skipped
        if sys.stderr.isatty():
            self.stderr.write(f"\rsent or settled: {self.done}", ending="")
            self.stderr.flush()

    def _dry_run(self, mailing_id):
        plans = dispatch_plan(mailing_id=mailing_id)
        if not plans:
            self.stdout.write(
                f"Nothing is due at {timezone.localtime():%Y-%m-%d %H:%M}."
            )
            return
        for plan in plans:
            self.stdout.write(
                f"#{plan.mailing.pk} {plan.mailing.title!r} "
                f"({plan.mailing.owner.email}) for "
                f"{timezone.localtime(plan.occurrence):%Y-%m-%d %H:%M}: "
                f"{plan.recipients - plan.unsubscribed} recipient(s), "
                f"{plan.unsubscribed} unsubscribed, "
                f"{plan.missed} missed occurrence(s) to record as skipped"
            )
        self.stdout.write("Dry run: nothing was sent or written.")
