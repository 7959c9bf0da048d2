"""The public site: home, blog and accounts. Views parse input and call services."""

import base64
import logging

from csp.decorators import csp_exempt
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.db import DatabaseError, transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_safe
from django_ratelimit.decorators import ratelimit

from . import tasks
from .clientip import client_ip
from .forms import (
    ATTRIBUTE_PREFIX,
    EmailAuthenticationForm,
    EmailForm,
    PreferencesForm,
    ProfileForm,
    SignupForm,
    SubscribeForm,
)
from .models import Client, Event, SubscriptionForm
from .services import (
    accounts,
    blog,
    privacy,
    site,
    subscriptions,
    throttles,
    tracking,
)
from .services.events import MESSAGE_PARAMETER
from .services.unsubscribe import client_for_unsubscribe, client_unsubscribe

logger = logging.getLogger(__name__)

TOO_MANY = _("Too many requests. Please wait a while and try again.")
MAIL_FAILED = _(
    "We could not send the e-mail right now. Please try again in a few minutes."
)


def refused(form, text=TOO_MANY):
    """An unbound form that shows one error: nothing in it was checked."""
    form.cleaned_data = {}
    form.add_error(None, text)
    return form


def throttle_mail(view):
    """Limit a view that sends mail, per client IP and per submitted e-mail."""
    per_email = ratelimit(
        key=throttles.submitted_email,
        rate=throttles.MAIL_RATE_PER_EMAIL,
        method="POST",
        block=False,
    )
    per_ip = ratelimit(
        key="ip", rate=throttles.MAIL_RATE_PER_IP, method="POST", block=False
    )
    return per_ip(per_email(view))


def home(request):
    return render(
        request,
        "core/home.html",
        {"figures": site.site_figures(), "articles": blog.blog_home_articles()},
    )


# The blog's data comes from the cache (core.services.blog); the pages are
# rendered per request, because the top bar shows who is logged in and the
# language switcher carries the visitor's own CSRF token.


@require_safe
def blog_list(request):
    page = blog.blog_page(number=request.GET.get("page", 1))
    return render(request, "core/blog/list.html", {"page": page})


@require_safe
def blog_article(request, slug):
    article = blog.blog_article(slug=slug)
    if article is None:
        raise Http404
    views = None
    if request.method == "GET":
        # Counted in the database on every view, cached page or not.
        views = blog.blog_article_count_view(article_id=article["id"])
        if views is None:
            raise Http404
    return render(
        request, "core/blog/article.html", {"article": article, "views": views}
    )


@sensitive_post_parameters("password1", "password2")
@throttle_mail
@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if getattr(request, "limited", False):
            form.add_error(None, TOO_MANY)
            return render(
                request, "core/accounts/signup.html", {"form": form}, status=429
            )
        sent = accounts.user_signup(
            email=form.cleaned_data["email"],
            full_name=form.cleaned_data["full_name"],
            password=form.cleaned_data["password1"],
        )
        request.session["signup_email"] = form.cleaned_data["email"]
        request.session["signup_mail_sent"] = sent
        return redirect("signup_done")
    return render(request, "core/accounts/signup.html", {"form": form})


def signup_done(request):
    return render(
        request,
        "core/accounts/signup_done.html",
        {
            "email": request.session.get("signup_email"),
            "mail_sent": request.session.get("signup_mail_sent", True),
        },
    )


@require_http_methods(["GET", "POST"])
def verify(request, uidb64, token):
    """GET shows a button; only its POST confirms the address."""
    outcome, user = accounts.user_verify(
        uidb64=uidb64, token=token, confirm=request.method == "POST"
    )
    status = 400 if outcome == "invalid" else 200
    return render(
        request, "core/accounts/verify.html", {"outcome": outcome}, status=status
    )


@throttle_mail
@require_http_methods(["GET", "POST"])
def resend_verification(request):
    form = EmailForm(request.POST or None, initial={"email": request.GET.get("email")})
    if request.method == "POST" and form.is_valid():
        if getattr(request, "limited", False):
            form.add_error(None, TOO_MANY)
        elif accounts.user_resend_verification(email=form.cleaned_data["email"]):
            return render(
                request,
                "core/accounts/resend_done.html",
                {"email": form.cleaned_data["email"]},
            )
        else:
            form.add_error(None, MAIL_FAILED)
    status = 429 if getattr(request, "limited", False) else 200
    return render(request, "core/accounts/resend.html", {"form": form}, status=status)


class LoginView(auth_views.LoginView):
    form_class = EmailAuthenticationForm
    template_name = "core/accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if throttles.login_account_limited(request, username=username):
            # Nothing is checked, so no password is hashed either.
            form = refused(self.form_class(request, initial={"username": username}))
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        # A try django-axes refused checked no password: it does not count,
        # or one address could spend an account's allowance for everyone.
        locked = getattr(self.request, "axes_locked_out", False)
        if form.has_error("__all__", "invalid_login") and not locked:
            throttles.login_account_limited(
                self.request,
                username=self.request.POST.get("username", ""),
                failed=True,
            )
        return super().form_invalid(form)


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@method_decorator(throttle_mail, name="post")
class PasswordResetView(auth_views.PasswordResetView):
    template_name = "core/accounts/password_reset.html"
    email_template_name = "emails/password_reset.txt"
    html_email_template_name = "emails/password_reset.html"
    subject_template_name = "emails/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        if getattr(self.request, "limited", False):
            form.add_error(None, TOO_MANY)
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        # Links point at SITE_URL, whatever Host the request came with. The
        # form logs a mail server's refusal and the page stays the same, so
        # the answer never tells whether the address has an account.
        form.save(
            domain_override=settings.SITE_DOMAIN,
            use_https=settings.SITE_USES_HTTPS,
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            html_email_template_name=self.html_email_template_name,
            extra_email_context={
                "site_name": settings.SITE_NAME,
                "site_url": settings.SITE_URL,
            },
            request=self.request,
        )
        return redirect(self.get_success_url())


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "core/accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "core/accounts/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "core/accounts/password_reset_complete.html"


@login_required
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@require_http_methods(["GET", "POST"])
def profile(request):
    action = request.POST.get("action")
    profile_form = ProfileForm(
        request.POST if action == "profile" else None, instance=request.user
    )
    password_form = PasswordChangeForm(
        request.user, request.POST if action == "password" else None
    )
    if action == "profile" and profile_form.is_valid():
        profile_form.save()
        messages.success(request, _("Your profile has been saved."))
        return redirect("profile")
    status = 200
    if action == "password":
        if throttles.password_check_limited(request):
            password_form = refused(PasswordChangeForm(request.user))
            status = 429
        elif password_form.is_valid():
            user = password_form.save()
            update_session_auth_hash(request, user)
            messages.success(request, _("Your password has been changed."))
            return redirect("profile")
        elif password_form.has_error("old_password"):
            throttles.password_check_limited(request, failed=True)
    return render(
        request,
        "core/accounts/profile.html",
        {"profile_form": profile_form, "password_form": password_form},
        status=status,
    )


@csrf_exempt  # RFC 8058: mail programs POST here without a form or cookie
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    """GET asks for confirmation; POST (a mail program's one click) acts at once."""
    if request.method == "POST":
        client = client_unsubscribe(
            token=token, message=request.GET.get(MESSAGE_PARAMETER, "")
        )
        template, outcome = "core/unsubscribe.html", "done"
    else:
        client = client_for_unsubscribe(token=token)
        template = "core/unsubscribe.html"
        outcome = "already" if client and client.unsubscribed_at else "confirm"
    if client is None:
        return render(request, template, {"outcome": "invalid"}, status=400)
    return render(
        request,
        template,
        {"outcome": outcome, "email": client.email, "token": token},
    )


# A transparent 1×1 GIF, the smallest image every mail program shows.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NOT_STORED = "no-store, no-cache, must-revalidate, max-age=0, private"


def _tracked(request, token, kind, index=None):
    """(good, the link) of a tracking request; a database that cannot even
    say which run the token names is a 503 for a click, the image anyway."""
    try:
        return tracking.event_record(
            token=token,
            kind=kind,
            index=index,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:500],
            method=request.method,
        )
    except DatabaseError:
        logger.exception("Tracking: the run of a %s could not be read", kind)
        return None, ""


# No Content-Security-Policy to build for an image or a redirect: the
# endpoints answer with as little work as they can.
@csp_exempt()
@require_safe
def track_open(request, token):
    """The pixel: always the image, recorded only when its token verifies."""
    _tracked(request, token, Event.Kind.OPEN)
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = NOT_STORED
    return response


@csp_exempt()
@require_safe
def track_click(request, token, index):
    """A tracked link: on to the link the run holds at `index`, never to an
    address from the request."""
    good, url = _tracked(request, token, Event.Kind.CLICK, index)
    if good is None:
        return HttpResponse(
            _("The link cannot be followed right now. Please try again in a minute."),
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    if not good:
        raise Http404
    if not url:  # the hidden link: a scanner's, or a person's by mistake
        response = HttpResponse(status=204)
    else:
        response = HttpResponseRedirect(url)
    response["Cache-Control"] = NOT_STORED
    response["Referrer-Policy"] = "no-referrer"
    return response


SUBMITTED_MAX = 5000


def _open_form(slug):
    form = get_object_or_404(
        SubscriptionForm.objects.select_related("owner"), slug=slug
    )
    if not subscriptions.form_is_open(form):
        raise Http404
    return form


# Posted from the form's own page or from another site (the snippet): no
# CSRF cookie there. The form's signed token stands in for one, and a
# submission only ever mails a confirmation link.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request, slug):
    subscription = _open_form(slug)
    fresh = subscriptions.form_token(form=subscription)
    if request.method != "POST":
        form = SubscribeForm(subscription=subscription, initial={"token": fresh})
        return render(request, "core/subscribe/form.html", _page(subscription, form))
    # Cut before anything reads them, still longer than any field allows:
    # an overlong value is refused as such, and never echoed back whole.
    posted = {key: value[:SUBMITTED_MAX] for key, value in request.POST.items()}
    form = SubscribeForm(posted, subscription=subscription)
    sent = redirect("subscribe_sent", slug=subscription.slug)
    if form.is_bot:
        return sent  # said as to a person; nothing is kept or mailed
    if throttles.subscribe_ip_limited(request):
        form = refused(
            SubscribeForm(subscription=subscription, initial={"token": fresh})
        )
        return render(
            request, "core/subscribe/form.html", _page(subscription, form), status=429
        )
    problem = subscriptions.form_token_problem(
        form=subscription, token=request.POST.get("token", "")
    )
    if problem:
        # Nothing typed is lost: the values come back with a fresh token.
        form = SubscribeForm({**posted, "token": fresh}, subscription=subscription)
        form.is_valid()
        form.add_error(None, problem)
    elif form.is_valid():
        limited = throttles.subscribe_email_limited(request, form_id=subscription.pk)
        refused_mail = subscriptions.mail_refused(
            form=subscription, email=form.cleaned_data["email"]
        )
        if not (limited or refused_mail):
            _submit(request, subscription, form)
        return sent
    return render(request, "core/subscribe/form.html", _page(subscription, form))


# One transaction: the recipient, their grants and the queued mail are
# committed together (a commit each took most of a submission's time), and
# no mail is queued for a recipient that was not saved.
@transaction.atomic
def _submit(request, subscription, form):
    link = subscriptions.subscription_submit(
        form=subscription,
        submission=subscriptions.Submission(
            email=form.cleaned_data["email"],
            full_name=form.cleaned_data.get("full_name", ""),
            attributes=form.cleaned_data["attributes"],
            consents=form.consents(),
            ip=client_ip(request) or None,
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        ),
    )
    tasks.queue(
        "core.tasks.subscription_confirmation",
        subscription.pk,
        form.cleaned_data["email"],
        link,
        get_language(),
    )


def _page(subscription, form):
    return {"subscription": subscription, "form": form}


@require_safe
def subscribe_sent(request, slug):
    subscription = _open_form(slug)
    return render(request, "core/subscribe/sent.html", {"subscription": subscription})


@require_http_methods(["GET", "HEAD", "POST"])
def subscribe_confirm(request, token):
    """GET shows a button; only pressing it (POST) confirms."""
    template = "core/subscribe/confirm.html"
    try:
        pending = subscriptions.subscription_pending(token=token)
    except subscriptions.LinkProblem as problem:
        context = {"outcome": problem.kind, "days": subscriptions.PENDING_DAYS}
        return render(request, template, context, status=400)
    context = {"subscription": pending.form, "email": pending.client.email}
    if request.method != "POST":
        outcome = "already" if pending.done else "confirm"
        return render(request, template, {**context, "outcome": outcome})
    confirmed = subscriptions.subscription_confirm(
        pending=pending,
        ip=client_ip(request) or None,
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    if not confirmed:
        return render(request, template, {**context, "outcome": "already"})
    if pending.form.welcome_message_id:
        tasks.queue(
            "core.tasks.subscription_welcome", pending.form.pk, pending.client.pk
        )
    if pending.form.redirect_url:
        return HttpResponseRedirect(pending.form.redirect_url)
    return render(request, template, {**context, "outcome": "done"})


@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request, token):
    """A recipient's own page, from the link in every message."""
    template = "core/preferences.html"
    client = privacy.preferences_client(token=token)
    if client is None:
        return render(request, template, {"outcome": "invalid"}, status=400)
    editable = privacy.editable_fields(client=client)
    topics = privacy.public_topics(client=client)
    action = request.POST.get("action") if request.method == "POST" else None
    form = PreferencesForm(
        request.POST if action == "save" else None,
        editable=editable,
        topics=topics,
        initial={
            "full_name": client.full_name,
            "topics": [tag.pk for tag in client.tags.filter(is_public=True)],
            **{
                ATTRIBUTE_PREFIX + key: value
                for key, value in client.attributes.items()
            },
        },
    )
    ip, agent = client_ip(request) or None, request.META.get("HTTP_USER_AGENT", "")
    message = request.GET.get(MESSAGE_PARAMETER, "")
    if action == "save" and form.is_valid():
        privacy.preferences_save(
            client=client,
            full_name=form.cleaned_data["full_name"],
            attributes=form.cleaned_data["attributes"],
            topics=form.cleaned_data.get("topics") or [],
            message=message,
        )
        messages.success(request, _("Your preferences are saved."))
        return redirect(request.get_full_path())
    if action == "unsubscribe":
        privacy.preferences_unsubscribe(
            client=client, ip=ip, user_agent=agent, message=message
        )
        messages.success(request, _("You are unsubscribed from all mailings."))
        return redirect(request.get_full_path())
    if action == "download":
        response = JsonResponse(
            privacy.client_data(client=client),
            json_dumps_params={"ensure_ascii": False, "indent": 2},
        )
        response["Content-Disposition"] = 'attachment; filename="my-data.json"'
        return response
    if action == "erase":
        if request.POST.get("erase_confirm"):
            privacy.clients_erase(clients=Client.objects.filter(pk=client.pk))
            return render(request, template, {"outcome": "erased"})
        messages.error(request, _("Tick the box to confirm the erasure."))
    context = {"outcome": "page", "client": client, "form": form}
    return render(request, template, context)


def csrf_failure(request, reason=""):
    """Our own page for an expired or cookie-less form, in the visitor's language."""
    return render(request, "403_csrf.html", status=403)
