from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from core.services import throttles
from core.services.dashboard import dashboard_figures


class MailingAdminSite(admin.AdminSite):
    """The admin, entered through the public login page.

    One login form for both doors means one set of rules: unconfirmed and
    blocked accounts are refused the same way, and failures are counted once.
    """

    site_header = _("Mailing service")
    site_title = _("Mailing service")
    index_title = _("Back office")
    index_template = "admin/core/index.html"

    def index(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "dashboard": dashboard_figures(user=request.user),
        }
        return super().index(request, extra_context)

    def get_urls(self):
        # Django's "view on site" redirect finds any object of any model by
        # its id, whoever asks; ours finds it through the model's admin.
        urls = super().get_urls()
        for index, pattern in enumerate(urls):
            if getattr(pattern, "name", None) == "view_on_site":
                urls[index] = path(
                    "r/<int:content_type_id>/<path:object_id>/",
                    self.admin_view(self.view_on_site),
                    name="view_on_site",
                )
        return urls

    def view_on_site(self, request, content_type_id, object_id):
        """Where an object is on the public site, for one who may see it in
        the admin; anything else answers as a missing object."""
        content_type = ContentType.objects.filter(pk=content_type_id).first()
        model = content_type.model_class() if content_type else None
        model_admin = self._registry.get(model)
        if model_admin is None or not model_admin.has_view_permission(request):
            raise Http404
        obj = model_admin.get_object(request, object_id)
        where = model_admin.view_on_site
        url = None
        if obj is not None and callable(where):
            url = where(obj)
        elif obj is not None and where and hasattr(obj, "get_absolute_url"):
            url = obj.get_absolute_url()
        if not url:
            raise Http404
        return redirect(url)

    def login(self, request, extra_context=None):
        if request.user.is_authenticated:
            # Logged in but not allowed here: say so instead of bouncing
            # between the two login pages.
            return TemplateResponse(
                request, "core/accounts/no_admin_access.html", status=403
            )
        next_url = request.GET.get("next") or reverse("admin:index")
        return redirect(f"{reverse('login')}?{urlencode({'next': next_url})}")

    def password_change(self, request, extra_context=None):
        """Django's page, with wrong current passwords throttled per account
        as on the profile page."""
        if request.method == "POST" and throttles.password_check_limited(request):
            return TemplateResponse(
                request,
                "core/accounts/too_many.html",
                {**self.each_context(request), "title": _("Too many attempts")},
                status=429,
            )
        response = super().password_change(request, extra_context)
        form = getattr(response, "context_data", {}).get("form")
        if (
            request.method == "POST"
            and form is not None
            and form.has_error("old_password")
        ):
            throttles.password_check_limited(request, failed=True)
        return response
