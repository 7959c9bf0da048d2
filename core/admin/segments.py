"""Segments: the rules editor (rows of condition, operator, value), the
members it selects counted live, and the first of them as a preview.

The JSON of `Segment.rules` is what is stored; the user never types it.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import Client, Field, Mailing, Segment, Tag
from core.models.segments import (
    CONDITIONS_MAX,
    OPS,
    Match,
    Op,
    rules_clean,
    rules_q,
    subjects,
)

from .base import OwnedAdmin, OwnedForm

PREVIEW_SIZE = 10
BLANK_ROWS = 3


class RulesWidget(forms.Widget):
    """Rows of (field, operator, value; days and mailing for activity)."""

    template_name = "admin/core/segment/rules_widget.html"
    subjects = {}
    tags = ()
    mailings = ()

    def configure(self, *, owner_id):
        self.subjects = subjects(fields=Field.objects.filter(owner_id=owner_id))
        self.tags = list(Tag.objects.filter(owner_id=owner_id).order_by("name"))
        self.mailings = list(
            Mailing.objects.filter(owner_id=owner_id).order_by("-created_at")[:200]
        )

    def value_from_datadict(self, data, files, name):
        conditions = []
        for index in range(CONDITIONS_MAX + BLANK_ROWS):
            prefix = f"{name}-{index}-"
            subject = (data.get(prefix + "field") or "").strip()
            if not subject or data.get(prefix + "DELETE"):
                continue
            op = data.get(prefix + "op") or ""
            kind = self.subjects.get(subject, ("text",))[0]
            if kind == "event":
                value = {
                    "mailing": data.get(prefix + "mailing") or "any",
                    "days": data.get(prefix + "days") or "",
                }
            else:
                value = data.get(prefix + "value", "")
            conditions.append({"field": subject, "op": op, "value": value})
        return {"match": data.get(f"{name}-match") or "", "conditions": conditions}

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        rules = value if isinstance(value, dict) else {}
        tag_names = {tag.pk: tag.name for tag in self.tags}
        rows = []
        for condition in rules.get("conditions") or []:
            if isinstance(condition, dict):
                rows.append(self._row(condition, tag_names))
        rows += [{"field": "", "op": "", "value": ""}] * BLANK_ROWS
        ops = dict(Op.choices)
        context["widget"].update(
            {
                "match": rules.get("match") or Match.ALL,
                "match_choices": Match.choices,
                "rows": [
                    {**row, "prefix": f"{name}-{index}-"}
                    for index, row in enumerate(rows[: CONDITIONS_MAX + BLANK_ROWS])
                ],
                "subjects": [
                    (key, label, kind)
                    for key, (kind, label, _f) in self.subjects.items()
                ],
                "ops": list(ops.items()),
                # Which operators fit which kind, for the script that narrows
                # the choice (the server checks it anyway).
                "kind_ops": {kind: list(allowed) for kind, allowed in OPS.items()},
                "tags": self.tags,
                "mailings": self.mailings,
                "choices": {
                    key: field.choices
                    for key, (_k, _l, field) in self.subjects.items()
                    if field is not None and field.choices
                },
            }
        )
        return context

    def _row(self, condition, tag_names):
        subject = condition.get("field", "")
        value = condition.get("value", "")
        kind, _label, field = self.subjects.get(subject, ("text", "", None))
        row = {"field": subject, "op": condition.get("op", ""), "value": value}
        if kind == "tag":
            row["value"] = tag_names.get(value, value)
        elif kind == "event" and isinstance(value, dict):
            row.update(value="", mailing=str(value.get("mailing", "any")))
            row["days"] = value.get("days", "")
        elif isinstance(value, list):
            row["value"] = ", ".join(
                field.display(item) if field else str(item) for item in value
            )
        elif field is not None:
            row["value"] = field.display(value)
        return row


class RulesField(forms.Field):
    widget = RulesWidget

    def to_python(self, value):
        return value if isinstance(value, dict) else {}

    def validate(self, value):
        if not value.get("conditions"):
            raise ValidationError(_("Add at least one condition."))


class SegmentForm(OwnedForm):
    rules = RulesField(label=_("rules"))

    class Meta:
        model = Segment
        fields = ["name", "rules"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The rules name the owner's fields, tags and mailings.
        self.fields["rules"].widget.configure(owner_id=self.instance.owner_id)

    def clean_name(self):
        name = " ".join((self.cleaned_data.get("name") or "").split())
        if self.owner_has(name__iexact=name):
            raise forms.ValidationError(_("You already have a segment with this name."))
        return name


@admin.register(Segment)
class SegmentAdmin(OwnedAdmin):
    form = SegmentForm

    class Media:
        js = ("core/js/segment-editor.js", "core/js/live-count.js")

    list_display = ("name", "members_count", "members_link")
    search_fields = ("name",)
    readonly_fields = ("members_preview",)
    fieldsets = (
        (None, {"fields": ("name",)}),
        (_("Who is in it"), {"fields": ("rules", "members_preview")}),
    )

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only: the rules as a sentence, not an editor.
            return ((None, {"fields": ("name", "rules_display", "members_preview")}),)
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "rules_display")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "count/",
                self.admin_site.admin_view(self.count_view),
                name="{}_{}_count".format(*info),
            ),
            *super().get_urls(),
        ]

    # --- members -----------------------------------------------------------
    @admin.display(description=_("members"))
    def members_count(self, obj):
        return obj.members().count()

    @admin.display(description=_("recipients"))
    def members_link(self, obj):
        url = reverse("admin:core_client_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"segment": obj.pk}),
            _("show"),
        )

    @admin.display(description=_("members now"))
    def members_preview(self, obj):
        count_url = reverse("admin:core_segment_count")
        if obj is None or obj.pk is None:
            text = _("Add conditions to see who matches.")
        else:
            text = members_text(obj.members())
        return format_html(
            '<div id="segment-members" data-live-count-url="{}">{}</div>',
            count_url,
            text,
        )

    @admin.display(description=_("rules"))
    def rules_display(self, obj):
        known = subjects(fields=Field.objects.filter(owner_id=obj.owner_id))
        tags = dict(Tag.objects.filter(owner_id=obj.owner_id).values_list("pk", "name"))
        ops = dict(Op.choices)
        lines = []
        for condition in obj.rules.get("conditions", []):
            subject = known.get(condition["field"])
            label = subject[1] if subject else condition["field"]
            value = condition["value"]
            if subject and subject[0] == "tag":
                value = tags.get(value, value)
            lines.append((label, ops.get(condition["op"], condition["op"]), value))
        intro = dict(Match.choices).get(obj.rules.get("match"), "")
        return format_html(
            "<div>{}</div>{}",
            intro,
            format_html_join("", "<div>{} {} {}</div>", lines),
        )

    def count_view(self, request):
        """The members the posted (unsaved) rules would select: how many and
        the first few, for the editor's live count."""
        if request.method != "POST":
            return JsonResponse({"error": "POST"}, status=405)
        if not self.works_here(request):
            raise PermissionDenied
        owner_id = request.user.pk
        widget = RulesWidget()
        widget.configure(owner_id=owner_id)
        rules = widget.value_from_datadict(request.POST, {}, "rules")
        try:
            rules = rules_clean(rules, owner_id=owner_id)
        except ValidationError as error:
            return JsonResponse({"errors": error.messages})
        fields = Field.objects.filter(owner_id=owner_id)
        members = Client.objects.filter(owner_id=owner_id).filter(
            rules_q(rules, fields=fields)
        )
        return JsonResponse({"html": str(members_text(members))})


def members_text(members):
    """“N recipients: a, b, c …” for the editor and the change page."""
    count = members.count()
    first = list(
        members.order_by("email").values_list("email", flat=True)[:PREVIEW_SIZE]
    )
    heading = ngettext(
        "%(count)d recipient matches now.", "%(count)d recipients match now.", count
    ) % {"count": count}
    if not first:
        return heading
    more = "…" if count > len(first) else ""
    return format_html(
        "<div>{}</div><div class='text-muted'>{}{}</div>",
        heading,
        ", ".join(first),
        more,
    )
