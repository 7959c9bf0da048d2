"""Custom fields: the owner's own columns for recipients (DESIGN.md, Field)."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.models import Client, Field

from .base import OwnedAdmin, OwnedForm


class ChoicesField(forms.CharField):
    """The values of a choice field, one per line."""

    widget = forms.Textarea(attrs={"rows": 5})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value)
        return [line.strip() for line in text.splitlines() if line.strip()]


class FieldForm(OwnedForm):
    choices = ChoicesField(
        label=_("choices"),
        required=False,
        max_length=20000,
        help_text=_("For the “choice” kind: one value per line."),
    )

    class Meta:
        model = Field
        fields = ["label", "key", "kind", "choices", "is_editable"]

    def clean_key(self):
        key = self.cleaned_data.get("key")
        if key and self.owner_has(key=key):
            raise forms.ValidationError(_("You already have a field with this key."))
        return key

    def clean_label(self):
        label = " ".join((self.cleaned_data.get("label") or "").split())
        if label and self.owner_has(label__iexact=label):
            raise forms.ValidationError(_("You already have a field with this label."))
        return label

    def clean(self):
        cleaned = super().clean()
        instance = self.instance
        if instance.pk is None or instance.kind != Field.Kind.CHOICE:
            return cleaned
        # A value recipients hold stays a choice: removing it would leave
        # them with a value the field no longer allows.
        kept = {choice.casefold() for choice in cleaned.get("choices") or []}
        removed = [c for c in instance.choices if c.casefold() not in kept]
        if removed:
            holding = Client.objects.filter(
                owner_id=instance.owner_id,
                **{f"attributes__{instance.key}__in": removed},
            ).count()
            if holding:
                self.add_error(
                    "choices",
                    ngettext(
                        "%(count)d recipient holds a value you removed "
                        "(%(values)s): keep it, or change theirs first.",
                        "%(count)d recipients hold a value you removed "
                        "(%(values)s): keep it, or change theirs first.",
                        holding,
                    )
                    % {"count": holding, "values": ", ".join(removed[:5])},
                )
        return cleaned


@admin.register(Field)
class FieldAdmin(OwnedAdmin):
    form = FieldForm
    list_display = ("label", "key", "kind", "is_editable")
    list_filter = ("kind", "is_editable")
    search_fields = ("label", "key")

    def get_readonly_fields(self, request, obj=None):
        # Messages, imports and segments name a field by its key, and hold
        # values of its kind: both are fixed once it exists.
        fixed = ("key", "kind") if obj is not None else ()
        return (*super().get_readonly_fields(request, obj), *fixed)
