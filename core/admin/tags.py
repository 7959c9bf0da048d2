"""Tags: the owner's labels, each with how many recipients carry it."""

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from core.models import Tag

from .base import OwnedAdmin


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["name", "is_public"]

    def clean_name(self):
        # The owner is set when the row is saved, so the unique constraint
        # cannot be checked by the form: asked here, as the model words it.
        name = " ".join((self.cleaned_data.get("name") or "").split())
        owner_id = self.instance.owner_id or self.request_user.pk
        taken = (
            Tag.objects.filter(owner_id=owner_id, name__iexact=name)
            .exclude(pk=self.instance.pk)
            .exists()
        )
        if taken:
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
