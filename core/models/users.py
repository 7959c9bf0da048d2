from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def sending_allowed_q(prefix: str = "") -> Q:
    """The one rule for an owner whose mailings may go out: not blocked, and
    sending not suspended by a manager. `prefix` reads it through a relation
    (``sending_allowed_q("owner__")``)."""
    return Q(
        **{
            f"{prefix}is_active": True,
            f"{prefix}sending_suspended_at__isnull": True,
        }
    )


def email_normalize(address: str) -> str:
    """An address as the service keeps and matches it (logins, recipients,
    suppressions, throttles). The whole address is lowercased: mailbox
    providers treat the local part case-insensitively, and people type it
    both ways."""
    return (address or "").strip().lower()


# Said of a user's default and of each mailing's own choice.
TRACK_RECIPIENTS_HELP = _(
    "Unset, opens and clicks are only counted: nobody can see who opened "
    "or clicked, and segments by opens and clicks find no one."
)


def quotas_check(daily: int | None, monthly: int | None) -> None:
    """The one rule for a user's pair of quotas: a day cannot allow more than
    its month. ValidationError if it would."""
    if daily is not None and monthly is not None and daily > monthly:
        raise ValidationError(
            _("A day cannot allow more than its month: %(daily)d > %(monthly)d.")
            % {"daily": daily, "monthly": monthly}
        )


class UserManager(BaseUserManager):
    """Users log in by e-mail; addresses are compared case-insensitively."""

    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email):
        return email_normalize(email)

    def with_email(self, email):
        """The user whose login is `email`, however it is spelled.

        Both sides lower-cased, as throttles and lockouts key the address:
        not `iexact`, which PostgreSQL runs as UPPER() and so matches
        "vıctim@" (dotless ı) to "victim@", each spelling with a lockout
        count of its own.
        """
        return self.alias(email_key=Lower("email")).filter(
            email_key=self.normalize_email(email)
        )

    def get_by_natural_key(self, username):
        return self.with_email(username).get()

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        extra_fields.setdefault("email_verified_at", timezone.now())
        if extra_fields["is_staff"] is not True:
            raise ValueError("A superuser must have is_staff=True.")
        if extra_fields["is_superuser"] is not True:
            raise ValueError("A superuser must have is_superuser=True.")
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in: a client, a manager or a superuser."""

    email = models.EmailField(
        _("e-mail"),
        unique=True,
        error_messages={"unique": _("A user with this e-mail already exists.")},
    )
    full_name = models.CharField(_("name"), max_length=150, blank=True)
    is_staff = models.BooleanField(
        _("staff status"),
        default=False,
        help_text=_("Can log into the admin. Set when the e-mail is confirmed."),
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_(
            "Unset to block the user: they cannot log in, their sessions end "
            "and nothing of theirs is sent."
        ),
    )
    email_verified_at = models.DateTimeField(
        _("e-mail confirmed at"), null=True, blank=True
    )
    sending_suspended_at = models.DateTimeField(
        _("sending suspended at"),
        null=True,
        blank=True,
        help_text=_(
            "Set by a manager: none of the user's mailings goes out, by any "
            "door, until it is lifted. Mailings keep their own switches."
        ),
    )
    sending_suspended_reason = models.CharField(
        _("why sending is suspended"),
        max_length=500,
        blank=True,
        help_text=_("Shown to the user."),
    )
    # Set by a manager; empty: the service's SENDING_QUOTA_DAILY and
    # SENDING_QUOTA_MONTHLY (core/services/quotas.py).
    daily_quota = models.PositiveIntegerField(
        _("daily sending quota"),
        null=True,
        blank=True,
        help_text=_(
            "Messages a day this user's mailings may hand to the relay; empty "
            "for the service's default. What exceeds it waits for the next day."
        ),
    )
    monthly_quota = models.PositiveIntegerField(
        _("monthly sending quota"),
        null=True,
        blank=True,
        help_text=_(
            "Messages a calendar month; empty for the service's default. What "
            "exceeds it waits for the next month."
        ),
    )
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    # What a new mailing of theirs tracks, until they choose otherwise on it.
    track_opens_default = models.BooleanField(
        _("track opens in new mailings"), default=True
    )
    track_clicks_default = models.BooleanField(
        _("track clicks in new mailings"), default=True
    )
    track_recipients_default = models.BooleanField(
        _("tie opens and clicks to recipients in new mailings"),
        default=True,
        help_text=TRACK_RECIPIENTS_HELP,
    )

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["full_name"]

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        ordering = ["email"]
        permissions = [
            ("set_user_active_status", _("Can block and unblock users")),
            ("suspend_sending", _("Can suspend and resume a user's sending")),
        ]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = type(self).objects.normalize_email(self.email)
        try:
            quotas_check(self.daily_quota, self.monthly_quota)
        except ValidationError as error:
            raise ValidationError({"daily_quota": error.messages}) from error

    def sending_refusal(self) -> str:
        """Why nothing of this user may be sent now ("" if it may)."""
        if not self.is_active:
            return str(_("The mailing's owner is blocked."))
        if self.sending_suspended_at is not None:
            return str(
                _("Sending is suspended by a manager: %(reason)s")
                % {"reason": self.sending_suspended_reason or _("no reason given")}
            )
        return ""

    @property
    def is_verified(self):
        return self.email_verified_at is not None

    def get_full_name(self):
        return self.full_name or self.email

    def get_short_name(self):
        return self.full_name or self.email
