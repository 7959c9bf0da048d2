"""Tags: the owner's labels, each with how many recipients carry it."""

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from core.models import Tag

from .base import OwnedAdmin, OwnedForm


class TagForm(OwnedForm):
    class Meta:
        model = Tag
        fields = ["name", "is_public"]

    def clean_name(self):
        name = " ".join((self.cleaned_data.get("name") or "").split())
        if self.owner_has(name__iexact=name):
            raise forms.ValidationError(_("You already have a tag with this name."))
        return name


@admin.register(Tag)
class TagAdmin(OwnedAdmin):
    form = TagForm
    list_display = ("name", "is_public", "recipients")
    list_filter = ("is_public",)
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(recipient_count=Count("clients"))

    @admin.display(description=_("recipients"), ordering="recipient_count")
    def recipients(self, obj):
        return obj.recipient_count
