"""Run one dispatch tick in the foreground, with progress and a summary."""

import gc
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from core.models import Mailing
from core.services.dispatch import NotSendable, dispatch_plan, dispatch_tick


class Command(BaseCommand):
    help = (
        "Send every mailing that is due now (one tick of the scheduler), or "
        "one mailing at once with --mailing. --dry-run only shows what would go."
    )
    # Run every minute from cron: the system checks (all models, URLs and
    # templates, a tenth of a second) belong to `check`, `migrate` and
    # `runserver`, not to each tick.
    requires_system_checks = []

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
        # What is loaded by now (Django, the apps, their modules: most of the
        # objects there are) lives as long as the process. Kept out of the
        # collector's passes, no collection while sending walks it, nor the
        # one at exit (0.2 s of each run); and delivery helpers forked later
        # share those pages untouched (the use gc.freeze is documented for).
        gc.freeze()
        if mailing is not None and not Mailing.objects.filter(pk=mailing).exists():
            raise CommandError(
                _("There is no mailing with id %(id)s.") % {"id": mailing}
            )
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
            raise CommandError(
                _("Mailing %(id)s is not sent: %(reason)s")
                % {"id": mailing, "reason": refusal}
            ) from None
        if self.done:
            self.stderr.write("")
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "runs %(runs)d (missed occurrences recorded as skipped: "
                    "%(skipped_runs)d), sent %(sent)d, failed %(failed)d, skipped "
                    "%(skipped)d, unknown %(unknown)d, waiting to retry %(retried)d"
                )
                % {
                    "runs": summary.runs,
                    "skipped_runs": summary.skipped_runs,
                    "sent": summary.sent,
                    "failed": summary.failed,
                    "skipped": summary.skipped,
                    "unknown": summary.unknown,
                    "retried": summary.retried,
                }
            )
        )

    def _progress(self, batch):
        self.done += batch.sent + batch.failed + batch.skipped
        if sys.stderr.isatty():
            self.stderr.write(
                "\r" + _("sent or settled: %(count)d") % {"count": self.done},
                ending="",
            )
            self.stderr.flush()

    def _dry_run(self, mailing_id):
        plans = dispatch_plan(mailing_id=mailing_id)
        if not plans:
            self.stdout.write(
                _("Nothing is due at %(moment)s.")
                % {"moment": f"{timezone.localtime():%Y-%m-%d %H:%M}"}
            )
            return
        for plan in plans:
            self.stdout.write(
                _(
                    "#%(id)s %(title)s (%(owner)s) for %(moment)s: %(recipients)d "
                    "recipient(s), %(unsubscribed)d unsubscribed, %(missed)d missed "
                    "occurrence(s) to record as skipped"
                )
                % {
                    "id": plan.mailing.pk,
                    "title": repr(plan.mailing.title),
                    "owner": plan.mailing.owner.email,
                    "moment": f"{timezone.localtime(plan.occurrence):%Y-%m-%d %H:%M}",
                    "recipients": plan.recipients - plan.unsubscribed,
                    "unsubscribed": plan.unsubscribed,
                    "missed": plan.missed,
                }
            )
        self.stdout.write(_("Dry run: nothing was sent or written."))
