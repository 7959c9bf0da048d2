from urllib.parse import urlencode

from django.contrib import admin
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

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
