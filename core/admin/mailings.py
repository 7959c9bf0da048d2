from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core import tasks
from core.models import Client, Mailing, Message, Segment, Tag
from core.services import events
from core.services import mailings as mailing_services
from core.services.quotas import usage_of

from .base import OwnedAdmin, OwnedForm, SendingNoticeMixin
from .reports import percent


def _audience_size():
    """How many recipients a mailing's run would be for (subscribed or not),
    counted as the send path resolves its audience."""
    return (
        Client.objects.filter(owner_id=OuterRef("owner_id"))
        .audience_of(OuterRef(OuterRef("pk")))
        .order_by()
        .values("owner_id")
        .annotate(size=Count("pk"))
        .values("size")[:1]
    )


class MailingForm(OwnedForm):
    class Meta:
        model = Mailing
        fields = [
            "title",
            "message",
            "clients",
            "tags",
            "segments",
            "start_at",
            "end_at",
            "periodicity",
            "track_opens",
            "track_clicks",
            "track_recipients",
        ]
        widgets = {
            "tags": forms.CheckboxSelectMultiple,
            "segments": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        owner_id = self.instance.owner_id
        # Only the owner's rows are valid choices: a forged id of another
        # user's message or recipient fails validation like a missing one.
        if "message" in self.fields:
            self.fields["message"].queryset = Message.objects.filter(owner_id=owner_id)
        if "clients" in self.fields:
            self.fields["clients"].queryset = Client.objects.filter(owner_id=owner_id)
        if "tags" in self.fields:
            self.fields["tags"].queryset = Tag.objects.filter(owner_id=owner_id)
        if "segments" in self.fields:
            self.fields["segments"].queryset = Segment.objects.filter(owner_id=owner_id)


def audience_text(total, reachable):
    text = ngettext("%(total)d recipient, ", "%(total)d recipients, ", total) % {
        "total": total
    }
    text += ngettext(
        "%(reachable)d of them may be mailed now (the others unsubscribed, "
        "are unconfirmed or suppressed).",
        "%(reachable)d of them may be mailed now (the others unsubscribed, "
        "are unconfirmed or suppressed).",
        reachable,
    ) % {"reachable": reachable}
    return text


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Mailing.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(status=self.value())
        return queryset


@admin.register(Mailing)
class MailingAdmin(SendingNoticeMixin, OwnedAdmin):
    form = MailingForm
    list_display = (
        "title",
        "status_badge",
        "periodicity",
        "start_at",
        "next_run_at",
        "recipients",
        "reports",
    )
    list_filter = (StatusFilter, "periodicity", "is_enabled")
    search_fields = ("title", "message__subject")
    autocomplete_fields = ("message", "clients")
    readonly_fields = (
        "status_badge",
        "next_run_at",
        "last_run_at",
        "is_enabled",
        "audience_size",
        "report",
    )
    actions = ("send_now", "disable_mailings", "enable_mailings")
    fieldsets = (
        (None, {"fields": ("title", "message")}),
        (
            _("Recipients"),
            {"fields": ("clients", "tags", "segments", "audience_size")},
        ),
        (_("Schedule"), {"fields": ("start_at", "end_at", "periodicity")}),
        (
            _("Opens and clicks"),
            {"fields": ("track_opens", "track_clicks", "track_recipients")},
        ),
        (
            _("State"),
            {
                "fields": (
                    "status_badge",
                    "is_enabled",
                    "next_run_at",
                    "last_run_at",
                    "report",
                )
            },
        ),
    )

    class Media:
        js = ("core/js/live-count.js",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("message", "owner")
            .prefetch_related("segments")
            .annotate(recipient_count=Coalesce(Subquery(_audience_size()), 0))
        )

    def get_changeform_initial_data(self, request):
        """A new mailing tracks what its owner's profile says."""
        initial = super().get_changeform_initial_data(request)
        for name in ("track_opens", "track_clicks", "track_recipients"):
            initial.setdefault(name, getattr(request.user, f"{name}_default"))
        return initial

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "audience/",
                self.admin_site.admin_view(self.audience_view),
                name="{}_{}_audience".format(*info),
            ),
            *super().get_urls(),
        ]

    def audience_view(self, request):
        """How many the mailing being edited would reach, before it is saved."""
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        if not self.works_here(request):
            raise PermissionDenied
        form = self.get_form(request)(request.POST)
        form.is_valid()  # only the audience's fields are read; each is the owner's
        chosen = {
            name: form.cleaned_data.get(name) or []
            for name in ("clients", "tags", "segments")
        }
        total, reachable = mailing_services.mailing_audience_size(
            owner_id=request.user.pk, **chosen
        )
        return JsonResponse({"html": str(audience_text(total, reachable))})

    @admin.display(description=_("audience"))
    def audience_size(self, obj):
        if obj is not None and obj.pk is not None:
            total, reachable = mailing_services.mailing_audience_size(
                owner_id=obj.owner_id,
                clients=obj.clients.all(),
                tags=obj.tags.all(),
                segments=obj.segments.all(),
            )
            text = audience_text(total, reachable)
        else:
            text = _("Choose recipients, tags or segments to see how many it reaches.")
        return format_html(
            '<div id="mailing-audience" data-live-count-url="{}">{}</div>',
            reverse("admin:core_mailing_audience"),
            text,
        )

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        colours = {
            Mailing.Status.CREATED: "secondary",
            Mailing.Status.RUNNING: "primary",
            Mailing.Status.COMPLETED: "success",
            Mailing.Status.DISABLED: "danger",
        }
        # The database computes the status: a mailing being added has none
        # yet, and is created.
        status = obj.status if obj.pk is not None else Mailing.Status.CREATED
        return format_html(
            '<span class="badge bg-{}">{}</span>',
            colours[status],
            Mailing.Status(status).label,
        )

    # Not sortable: a segment's members are counted by its rules, row by row.
    @admin.display(description=_("recipients"))
    def recipients(self, obj):
        segments = list(obj.segments.all())
        if not segments:
            return getattr(obj, "recipient_count", None)
        return (
            Client.objects.filter(owner_id=obj.owner_id)
            .audience_of(obj.pk, segments=segments)
            .count()
        )

    @admin.display(description=_("report"))
    def report(self, obj):
        """What followed all of the mailing's runs, with a link to them."""
        if obj is None or obj.pk is None:
            return "—"
        figures = events.mailing_followed(mailing=obj)
        if not figures["runs"]:
            return _("Not sent yet.")
        text = _(
            "runs %(runs)d; sent %(sent)d; delivered %(delivered)d; bounced "
            "%(bounced)d; complaints %(complained)d; unsubscribed %(unsubscribed)d; "
            "opened %(opened)d (%(open_rate)s); clicked %(clicked)d (%(click_rate)s)"
        ) % {
            **figures,
            "open_rate": percent(figures["open_rate"]),
            "click_rate": percent(figures["click_rate"]),
        }
        return format_html("{} · {}", text, self.reports(obj))

    @admin.display(description=_("reports"))
    def reports(self, obj):
        url = reverse("admin:core_mailingrun_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"mailing__id__exact": obj.pk}),
            _("runs"),
        )

    # --- owner actions -------------------------------------------------
    @admin.action(description=_("Send now"))
    def send_now(self, request, queryset):
        queued, refused, broken = [], [], []
        for mailing in queryset.select_related("message", "owner"):
            may_send = mailing.is_enabled and self.has_change_permission(
                request, mailing
            )
            problem = mailing.owner.sending_refusal()
            if not problem and (unsafe := mailing.message.sending_problem()):
                problem = _("the message must be fixed first: %(problem)s") % {
                    "problem": unsafe
                }
            if may_send and problem:
                broken.append(f"{mailing.title} ({problem})")
                continue
            (queued if may_send else refused).append(mailing)
        # Told as it stands when asked, before any of it goes.
        quota_notes = [self._quota_note(owner) for owner in {m.owner for m in queued}]
        for mailing in queued:
            tasks.queue("core.tasks.send_now", mailing.pk)
            self.log_change(request, mailing, _("Queued to send now."))
        if queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d mailing is queued and goes out in a moment.",
                    "%(count)d mailings are queued and go out in a moment.",
                    len(queued),
                )
                % {"count": len(queued)},
                messages.SUCCESS,
            )
        for note in filter(None, quota_notes):
            self.message_user(request, note, messages.WARNING)
        if broken:
            self.message_user(
                request,
                _("Not sent: %(titles)s") % {"titles": "; ".join(broken)},
                messages.ERROR,
            )
        if refused:
            self.message_user(
                request,
                _("Not sent (disabled, or not yours): %(titles)s")
                % {"titles": ", ".join(m.title for m in refused)},
                messages.WARNING,
            )

    @staticmethod
    def _quota_note(owner) -> str:
        """What the owner's sending quota lets go now, where one holds."""
        usage = usage_of(owner)
        text = usage.explain()
        if not text and usage.left is not None:
            text = ngettext(
                "The sending quota of %(owner)s leaves %(left)d message now; what "
                "exceeds it waits, queued, for the next day or month.",
                "The sending quota of %(owner)s leaves %(left)d messages now; what "
                "exceeds it waits, queued, for the next day or month.",
                usage.left,
            ) % {"owner": owner.email, "left": usage.left}
        return text

    # --- manager actions -----------------------------------------------
    def has_set_schedule_active_status_permission(self, request):
        return request.user.has_perm("core.set_schedule_active_status")

    @admin.action(
        description=_("Disable selected mailings"),
        permissions=["set_schedule_active_status"],
    )
    def disable_mailings(self, request, queryset):
        self._switch(request, queryset, enabled=False)

    @admin.action(
        description=_("Enable selected mailings"),
        permissions=["set_schedule_active_status"],
    )
    def enable_mailings(self, request, queryset):
        self._switch(request, queryset, enabled=True)

    def _switch(self, request, queryset, *, enabled):
        changed = mailing_services.mailings_set_enabled(
            mailings=queryset, enabled=enabled
        )
        for mailing in changed:
            self.log_change(
                request,
                mailing,
                [{"changed": {"fields": ["is_enabled"]}}],
            )
        if enabled:
            text = ngettext(
                "%(count)d mailing enabled.",
                "%(count)d mailings enabled.",
                len(changed),
            )
        else:
            text = ngettext(
                "%(count)d mailing disabled.",
                "%(count)d mailings disabled.",
                len(changed),
            )
        self.message_user(request, text % {"count": len(changed)}, messages.SUCCESS)
