from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from core.models import Message
from core.models.grants import perm_name
from core.services import messages as message_services

from .base import OwnedAdmin, SendingNoticeMixin


class MessageForm(forms.ModelForm):
    class Meta:
        model = Message
        fields = ["from_name", "from_email", "reply_to", "subject", "body", "html_body"]
        widgets = {
            "subject": forms.TextInput(attrs={"size": 80}),
            "body": forms.Textarea(attrs={"rows": 14}),
            "html_body": forms.Textarea(attrs={"rows": 10}),
        }


@admin.register(Message)
class MessageAdmin(SendingNoticeMixin, OwnedAdmin):
    form = MessageForm
    list_display = ("subject", "problem", "created_at", "updated_at")
    search_fields = ("subject", "body")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (_("Sender"), {"fields": ("from_name", "from_email", "reply_to")}),
        (None, {"fields": ("subject", "body")}),
        (_("HTML"), {"fields": ("html_body",), "classes": ("collapse",)}),
        (_("History"), {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description=_("problem"))
    def problem(self, obj):
        """Text saved before the template language was bounded, flagged."""
        return obj.template_problem() or "—"

    def _message(self, request, object_id):
        """The message, as the admin's own queryset sees it; 404 otherwise
        (also for an id that is not a number)."""
        message = self.get_object(request, unquote(object_id))
        if message is None:
            raise Http404
        return message

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="{}_{}_send_test".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "extra_object_tools": [
                {
                    "url": reverse("admin:core_message_preview", args=[object_id]),
                    "label": _("Preview"),
                }
            ],
        }
        message = self.get_object(request, unquote(object_id))
        if request.method == "GET" and message is not None:
            if unsafe := message.sending_problem():
                self.message_user(
                    request,
                    _("This message is not sent until it is fixed. %(problem)s")
                    % {"problem": unsafe},
                    messages.ERROR,
                )
            elif problem := message.template_problem():
                self.message_user(
                    request,
                    _(
                        "This message uses what messages may no longer use; it "
                        "is sent with that part empty until it is fixed. "
                        "%(problem)s"
                    )
                    % {"problem": problem},
                    messages.WARNING,
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def preview_view(self, request, object_id):
        message = self._message(request, object_id)
        preview = message_services.message_preview(
            message=message, email=request.GET.get("as", "")[:254]
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": message,
            "title": _("Preview: %(subject)s") % {"subject": message.subject},
            "preview": preview,
            "can_send_test": request.user.has_perm(
                perm_name(Message, "change"), message
            )
            or request.user.is_superuser,
        }
        return TemplateResponse(request, "admin/core/message/preview.html", context)

    def send_test_view(self, request, object_id):
        message = self._message(request, object_id)
        preview_url = reverse("admin:core_message_preview", args=[message.pk])
        if request.method != "POST":
            return admin.options.HttpResponseRedirect(preview_url)
        if not (
            request.user.is_superuser or self.has_change_permission(request, message)
        ):
            raise admin.options.PermissionDenied
        ok, detail = message_services.message_send_test(
            message=message, to=request.user.email
        )
        if ok:
            self.message_user(
                request,
                _("A test e-mail was sent to %(email)s.")
                % {"email": request.user.email},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                _("The test e-mail could not be sent: %(error)s") % {"error": detail},
                messages.ERROR,
            )
        return admin.options.HttpResponseRedirect(preview_url)
