from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from core.links import PUBLIC_URLCONF
from core.webhook_urls import webhook_patterns

# Every app's admin module registers itself here, with the URLconf, not at
# start-up (core.apps.MailingAdminConfig).
admin.autodiscover()

urlpatterns = [
    *webhook_patterns(),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include(PUBLIC_URLCONF)),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
