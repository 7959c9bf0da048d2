import csv

from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core import tasks
from core.models import Attempt, Event, MailingRun, UnreadBounce
from core.models.base import sees_all
from core.services import dispatch, events, mailings
from core.services.mail.message import message_sender
from core.services.quotas import usage_of
from core.services.relays import relay_active_of
from core.services.tracking import MACHINE_REASONS


class ReportAdmin(admin.ModelAdmin):
    """Runs and attempts: reports, visible to whoever may view the mailing."""

    show_full_result_count = False
    list_per_page = 100

    def sees_all(self, request):
        return sees_all(request.user, self.model)

    def get_queryset(self, request):
        return super().get_queryset(request).visible_to(request.user)

    def has_view_permission(self, request, obj=None):
        if self.sees_all(request):
            return True
        if obj is None:
            return request.user.has_perm("core.add_mailing")
        mailing = obj.mailing if isinstance(obj, MailingRun) else obj.run.mailing
        return request.user.has_perm("core.view_mailing", mailing)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(MailingRun)
class MailingRunAdmin(ReportAdmin):
    list_display = (
        "mailing",
        "scheduled_for",
        "status",
        "total_count",
        "sent_count",
        "failed_count",
        "skipped_count",
        "unknown_count",
        "started_at",
        "finished_at",
        "attempts_link",
    )
    list_filter = ("status", ("mailing", admin.RelatedOnlyFieldListFilter))
    readonly_fields = (
        "sender",
        "held_back",
        "left_out",
        "followed",
        "engagement",
        "links_report",
        "timeline",
    )
    # The report first; the run's own counters and what it tracks after.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "mailing",
                    "sender",
                    "scheduled_for",
                    "status",
                    "held_back",
                    "followed",
                    "engagement",
                    "links_report",
                    "timeline",
                    "left_out",
                )
            },
        ),
        (
            _("Sending"),
            {
                "fields": (
                    "started_at",
                    "finished_at",
                    "total_count",
                    "sent_count",
                    "failed_count",
                    "skipped_count",
                    "unknown_count",
                    "paused_until",
                )
            },
        ),
        (
            _("Opens and clicks"),
            {"fields": ("track_opens", "track_clicks", "track_recipients")},
        ),
    )
    actions = ("retry_failed", "follow_up", "export_report")
    list_select_related = ("mailing",)
    search_fields = ("mailing__title",)
    date_hierarchy = "scheduled_for"

    @admin.display(description=_("sender"))
    def sender(self, obj):
        message = obj.mailing.message
        domain = message.sender_domain()
        if domain:
            signed = _("signed by %(domain)s (DKIM)") % {"domain": domain.domain}
        elif message.from_email:
            signed = _("its domain is not verified: the run waits")
        else:
            signed = _("not signed: the service's own address")
        return f"{message_sender(message)} — {signed}"

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and self.held_back(obj) != "—":
            return fieldsets
        # The line is there only while the quota holds something back.
        (name, options), *rest = fieldsets
        fields = [field for field in options["fields"] if field != "held_back"]
        return ((name, {**options, "fields": fields}), *rest)

    @admin.display(description=_("held back"))
    def held_back(self, obj):
        """Why what is left of the run waits: the owner's own relay failing,
        or their sending quota used up. Read once for the page (its fieldsets
        ask too)."""
        if not hasattr(obj, "_held_back"):
            obj._held_back = self._held_back(obj)
        return obj._held_back

    def _held_back(self, obj):
        settled = obj.sent_count + obj.failed_count + obj.skipped_count
        waiting = obj.total_count - settled - obj.unknown_count
        over = obj.status in (MailingRun.Status.FINISHED, MailingRun.Status.SKIPPED)
        if over or waiting <= 0:
            return "—"
        relay = relay_active_of(obj.owner_id)
        if relay is not None and relay.problem:
            return _(
                "Your SMTP relay %(relay)s: %(problem)s. The rest waits, queued, "
                "and goes once the relay works (Test connection, under SMTP relays)."
            ) % {"relay": relay, "problem": relay.problem}
        return usage_of(obj.owner).explain() or "—"

    @admin.display(description=_("left out"))
    def left_out(self, obj):
        """Who was not mailed, and why."""
        reasons = dispatch.run_left_out(run=obj)
        return "; ".join(f"{reason}: {count}" for reason, count in reasons) or "—"

    @staticmethod
    def _followed(obj) -> dict:
        """The run's figures, read once for the page's two lines."""
        if not hasattr(obj, "_followed_figures"):
            obj._followed_figures = events.run_followed(run=obj)
        return obj._followed_figures

    @admin.display(description=_("what followed"))
    def followed(self, obj):
        """Delivered, bounced (by type), complaints and unsubscribes, with a
        link to the events themselves."""
        figures = self._followed(obj)
        severities = ", ".join(
            f"{Event.Severity(severity).label.split(':')[0]} {count}"
            for severity, count in sorted(figures["severities"].items())
            if severity
        )
        text = _(
            "delivered %(delivered)d; bounced %(bounced)d%(severities)s; "
            "complaints %(complained)d; unsubscribed %(unsubscribed)d"
        ) % {
            **figures,
            "severities": f" ({severities})" if severities else "",
        }
        url = reverse("admin:core_event_changelist")
        return format_html(
            '{} · <a href="{}?{}">{}</a>',
            text,
            url,
            urlencode({"run__id__exact": obj.pk}),
            _("events"),
        )

    @admin.display(description=_("opens and clicks"))
    def engagement(self, obj):
        figures = events.run_engagement(
            run=obj, delivered=self._followed(obj)["delivered"]
        )
        return engagement_text(figures)

    @admin.display(description=_("clicks per link"))
    def links_report(self, obj):
        rows = events.run_links(run=obj)
        if not rows:
            return "—"
        return format_html(
            '<table class="table table-sm mb-0"><thead><tr><th>#</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("link"),
            _("clicks by people"),
            _("by machines"),
            format_html_join(
                "",
                '<tr><td>{}</td><td><a href="{}" rel="noopener noreferrer" '
                'target="_blank">{}</a></td><td>{}</td><td>{}</td></tr>',
                (
                    (
                        row["index"],
                        row["url"],
                        row["url"][:100],
                        row["clicks"],
                        row["machines"],
                    )
                    for row in rows
                ),
            ),
        )

    @admin.display(description=_("the first 48 hours"))
    def timeline(self, obj):
        """People's opens and clicks per hour, as bars."""
        hours = events.run_timeline(run=obj)
        top = max((h["opens"] + h["clicks"] for h in hours), default=0)
        if not top:
            return "—"
        bars = format_html_join(
            "",
            '<div title="{}" style="flex:1;display:flex;flex-direction:column;'
            'justify-content:flex-end"><div style="height:{}%;background:#0d6efd">'
            '</div><div style="height:{}%;background:#20c997"></div></div>',
            (
                (
                    _("%(hour)s: opens %(opens)d, clicks %(clicks)d")
                    % {
                        "hour": f"{h['hour']:%d.%m %H:00} UTC",
                        "opens": h["opens"],
                        "clicks": h["clicks"],
                    },
                    round(100 * h["opens"] / top),
                    round(100 * h["clicks"] / top),
                )
                for h in hours
            ),
        )
        return format_html(
            '<div class="run-timeline" style="display:flex;gap:1px;height:80px;'
            'max-width:720px">{}</div><small class="text-muted">{}</small>',
            bars,
            _("Per hour from the start: opens in blue, clicks in green; people only."),
        )

    @staticmethod
    def _may_act_on(request, run) -> bool:
        """An owner's action on a run (a retry, a follow-up): theirs to
        change, and not switched off by a manager."""
        may_change = request.user.is_superuser or request.user.has_perm(
            "core.change_mailing", run.mailing
        )
        return may_change and run.mailing.is_enabled

    def get_actions(self, request):
        # Reports are read-only, but the owner may queue a retry.
        actions = super().get_actions(request)
        if self.sees_all(request) and not request.user.is_superuser:
            actions.pop("retry_failed", None)
            actions.pop("follow_up", None)
        return actions

    @admin.action(description=_("Follow up with those who did not open"))
    def follow_up(self, request, queryset):
        """A new mailing of the same message to the segment of recipients
        the mailing reached and who did not open it, starting tomorrow, for
        the owner to review."""
        made, untracked = [], 0
        for run in queryset.select_related("mailing"):
            # Not of a mailing a manager switched off: its copy would send.
            if not self._may_act_on(request, run):
                continue
            if not (run.track_recipients and (run.track_opens or run.track_clicks)):
                untracked += 1  # nobody is known to have opened it
                continue
            mailing = mailings.mailing_follow_up(run=run)
            self.log_addition(request, mailing, _("Follow-up of a run."))
            made.append(mailing)
        if untracked:
            self.message_user(
                request,
                ngettext(
                    "%(count)d run did not track opens per recipient: no follow-up "
                    "can tell who did not open it.",
                    "%(count)d runs did not track opens per recipient: no follow-up "
                    "can tell who did not open them.",
                    untracked,
                )
                % {"count": untracked},
                messages.WARNING,
            )
        if not made:
            if not untracked:
                self.message_user(
                    request,
                    _("No follow-up was made: none of these is yours."),
                    messages.WARNING,
                )
            return None
        self.message_user(
            request,
            ngettext(
                "%(count)d follow-up mailing is made; it starts tomorrow: review it.",
                "%(count)d follow-up mailings are made; they start tomorrow.",
                len(made),
            )
            % {"count": len(made)},
            messages.SUCCESS,
        )
        if len(made) == 1:
            return redirect(reverse("admin:core_mailing_change", args=[made[0].pk]))
        return None

    @admin.action(description=_("Export the report (CSV)"))
    def export_report(self, request, queryset):
        """Every figure of the chosen runs' reports, one per line."""
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="report.csv"'
        response.write("\ufeff")  # spreadsheet programs read it as UTF-8
        writer = csv.writer(response)
        writer.writerow(
            [_("run"), _("mailing"), _("scheduled for"), _("figure"), _("value")]
        )
        for run in queryset.select_related("mailing").order_by("scheduled_for"):
            for figure, value in events.run_report_rows(run=run):
                writer.writerow(
                    [
                        run.pk,
                        _cell(run.mailing.title),
                        run.scheduled_for.isoformat(),
                        _cell(figure),
                        value,
                    ]
                )
        return response

    @admin.action(description=_("Retry failed recipients"))
    def retry_failed(self, request, queryset):
        total = 0
        for run in queryset.select_related("mailing"):
            if not self._may_act_on(request, run):
                continue
            count = dispatch.run_retry_failed(run=run)
            if count:
                total += count
                self.log_change(
                    request,
                    run,
                    _("%(count)d failed recipients queued again.") % {"count": count},
                )
        if total:
            tasks.queue("core.tasks.fan_out")
        self.message_user(
            request,
            ngettext(
                "%(count)d failed recipient is queued for another try.",
                "%(count)d failed recipients are queued for another try.",
                total,
            )
            % {"count": total},
            messages.SUCCESS if total else messages.WARNING,
        )

    @admin.display(description=_("attempts"))
    def attempts_link(self, obj):
        url = reverse("admin:core_attempt_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"run__id__exact": obj.pk}),
            _("attempts"),
        )


def _cell(text: str) -> str:
    """Text a spreadsheet takes as text, never as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def engagement_text(figures: dict) -> str:
    """A run's opens and clicks in a line."""
    if not (figures["tracks_opens"] or figures["tracks_clicks"]):
        return _("Opens and clicks are not tracked in this run.")
    if figures["per_recipient"]:
        text = _(
            "opened %(opened)d (%(open_rate)s); clicked %(clicked)d "
            "(%(click_rate)s); opens %(opens)d and clicks %(clicks)d by people, "
            "%(opens_by_machines)d and %(clicks_by_machines)d by machines"
        )
    else:
        text = _(
            "opens %(opens)d and clicks %(clicks)d by people, "
            "%(opens_by_machines)d and %(clicks_by_machines)d by machines; "
            "not tied to recipients"
        )
    shown = {
        **figures,
        "open_rate": percent(figures["open_rate"]),
        "click_rate": percent(figures["click_rate"]),
    }
    text = text % shown
    if not figures["tracks_opens"]:
        text += "; " + _("opens not tracked (text only, or switched off)")
    return text


def percent(rate) -> str:
    return "—" if rate is None else f"{rate:g}%"


class FollowedFilter(admin.SimpleListFilter):
    """Attempts by what followed them."""

    title = _("what followed")
    parameter_name = "followed"
    COLUMNS = {
        "opened": ("opened_at", _("opened")),
        "not_opened": ("opened_at", _("sent, not opened")),
        "clicked": ("clicked_at", _("clicked")),
        "bounced": ("bounced_at", _("bounced")),
        "complained": ("complained_at", _("complained")),
        "unsubscribed": ("unsubscribed_at", _("unsubscribed")),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (_column, label) in self.COLUMNS.items()]

    def queryset(self, request, queryset):
        chosen = self.COLUMNS.get(self.value())
        if chosen is None:
            return queryset
        column = chosen[0]
        if self.value() == "not_opened":
            return queryset.filter(status=Attempt.Status.SENT, opened_at__isnull=True)
        return queryset.filter(**{f"{column}__isnull": False})


@admin.register(Attempt)
class AttemptAdmin(ReportAdmin):
    list_display = (
        "email",
        "status",
        "tries",
        "short_response",
        "attempted_at",
        "opened_at",
        "clicked_at",
        "run",
    )
    list_filter = ("status", FollowedFilter)
    list_select_related = ("run__mailing",)
    search_fields = ("email",)
    readonly_fields = (
        "run",
        "client",
        "email",
        "status",
        "tries",
        "server_response",
        "attempted_at",
        "next_try_at",
        "opened_at",
        "clicked_at",
        "bounced_at",
        "complained_at",
        "unsubscribed_at",
    )
    exclude = ("owner",)

    def lookup_allowed(self, lookup, value, request=None):
        # The run's report links here with ?run__id__exact=…; the queryset
        # is already limited to what the user may see.
        return lookup == "run__id__exact" or super().lookup_allowed(
            lookup, value, request
        )

    @admin.display(description=_("server response"))
    def short_response(self, obj):
        text = obj.server_response or ""
        return text if len(text) <= 120 else text[:117] + "…"


@admin.register(Event)
class EventAdmin(ReportAdmin):
    """What followed sent messages: bounces, complaints, unsubscribes."""

    list_display = (
        "at",
        "kind",
        "severity",
        "status",
        "email",
        "shown_detail",
        "url",
        "is_machine",
        "source",
    )
    list_filter = ("kind", "is_machine", "severity", "source")
    list_select_related = ("attempt",)
    search_fields = ("attempt__email",)
    readonly_fields = [field.name for field in Event._meta.fields]

    @admin.display(description=_("address"))
    def email(self, obj):
        return obj.attempt.email if obj.attempt else ""

    @admin.display(description=_("detail"))
    def shown_detail(self, obj):
        return MACHINE_REASONS.get(obj.detail, obj.detail)

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "run__id__exact" or super().lookup_allowed(
            lookup, value, request
        )


@admin.register(UnreadBounce)
class UnreadBounceAdmin(admin.ModelAdmin):
    """What the bounce mailbox holds that `process_bounces` could not act on:
    for managers to look at in the mailbox itself."""

    list_display = (
        "last_seen_at",
        "subject",
        "sender",
        "reason",
        "size",
        "times_seen",
        "mailbox",
    )
    list_filter = ("reason",)
    search_fields = ("subject", "sender")
    readonly_fields = [field.name for field in UnreadBounce._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
