"""Sender domains: the records to publish, and what the DNS says of them."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import SenderDomain
from core.models.senders import domain_normalize
from core.services.senders import DnsUnavailable, sender_domain_check

from .base import OwnedAdmin, OwnedForm

KIND_LABELS = {
    "dkim": _("DKIM key (verifies the domain)"),
    "dkim-ed25519": _("DKIM Ed25519 key (the second signature)"),
    "spf": _("SPF (suggested)"),
    "dmarc": _("DMARC (suggested)"),
    "return-path": _("Return path (bounces on your domain; suggested)"),
}


class SenderDomainForm(OwnedForm):
    class Meta:
        model = SenderDomain
        fields = ["domain", "signs_ed25519"]

    def clean_domain(self):
        domain = domain_normalize(self.cleaned_data.get("domain") or "")
        if self.owner_has(domain=domain):
            raise forms.ValidationError(_("You have added this domain already."))
        return domain


@admin.register(SenderDomain)
class SenderDomainAdmin(OwnedAdmin):
    form = SenderDomainForm
    list_display = (
        "domain",
        "verified",
        "dkim_state",
        "ed25519_state",
        "spf_state",
        "dmarc_state",
        "return_path_state",
    )
    search_fields = ("domain",)
    actions = ["check_dns"]
    readonly_fields = ("records", "verified_at", "checked_at")

    class Media:
        js = ("core/js/copy-buttons.js",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["domain", "signs_ed25519"]
        return ["domain", "signs_ed25519", "records", "verified_at", "checked_at"]

    def get_readonly_fields(self, request, obj=None):
        # The key and its records belong to the domain as it was added.
        fixed = ("domain",) if obj is not None else ()
        return (*super().get_readonly_fields(request, obj), *fixed)

    @admin.display(description=_("verified"), boolean=True, ordering="verified_at")
    def verified(self, obj):
        return obj.verified_at is not None

    def _state(self, obj, kind):
        state = (obj.dns_check or {}).get(kind)
        return SenderDomain.Check(state).label if state else "—"

    @admin.display(description="DKIM")
    def dkim_state(self, obj):
        return self._state(obj, "dkim")

    @admin.display(description="Ed25519")
    def ed25519_state(self, obj):
        return self._state(obj, "dkim-ed25519") if obj.signs_ed25519 else "—"

    @admin.display(description="SPF")
    def spf_state(self, obj):
        return self._state(obj, "spf")

    @admin.display(description="DMARC")
    def dmarc_state(self, obj):
        return self._state(obj, "dmarc")

    @admin.display(description=_("return path"))
    def return_path_state(self, obj):
        return self._state(obj, "return-path")

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        if settings.RETURN_PATH_HOST:
            return shown
        return [name for name in shown if name != "return_path_state"]

    @admin.display(description=_("records to publish in the domain's DNS"))
    def records(self, obj):
        # Each record in a body of its own: what and where on one line, the
        # value at the field's full width below it, with its copy button.
        rows = format_html_join(
            "",
            '<tbody class="dns-record"><tr><td>{}</td><td><code>{}</code></td>'
            '<td>{}</td><td>{}</td></tr><tr><td colspan="4" class="border-top-0">'
            '<div class="d-flex gap-2 align-items-start"><textarea readonly '
            'rows="3" class="form-control font-monospace small" id="{}">{}'
            "</textarea>"
            '<button type="button" class="btn btn-sm btn-outline-secondary" '
            'data-copy="{}" data-copied="{}">{}</button></div></td></tr></tbody>',
            (
                (
                    KIND_LABELS[record["kind"]],
                    record["name"],
                    record["type"],
                    self._state(obj, record["kind"]),
                    f"record-{record['kind']}",
                    record["value"],
                    f"record-{record['kind']}",
                    _("copied"),
                    _("copy"),
                )
                for record in obj.dns_records()
            ),
        )
        return format_html(
            '<table class="table table-sm"><thead><tr><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead>{}</table>"
            "<div class='help'>{}</div>",
            _("record"),
            _("name"),
            _("type"),
            _("last check"),
            rows,
            _(
                "Add these records at your domain's DNS host, then choose "
                "“Check DNS now” in the list. The domain is verified once its "
                "DKIM record is found; the check runs again every day."
            ),
        )

    @admin.action(description=_("Check DNS now"), permissions=["change"])
    def check_dns(self, request, queryset):
        verified = 0
        for domain in queryset:
            try:
                states = sender_domain_check(domain)
            except DnsUnavailable as error:
                self.message_user(
                    request,
                    _("%(domain)s: %(error)s") % {"domain": domain, "error": error},
                    messages.WARNING,
                )
                continue
            verified += states["dkim"] == SenderDomain.Check.FOUND
        self.message_user(
            request,
            ngettext(
                "%(count)d domain verified.", "%(count)d domains verified.", verified
            )
            % {"count": verified},
        )
