from urllib.parse import urlencode

from django.contrib import admin
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
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
