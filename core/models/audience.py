"""Who a mailing reaches beyond recipients chosen one by one (DESIGN.md,
Domain model): tags, and the custom fields recipients' attributes fill;
segments, which combine both, are in `segments`."""

import datetime
import decimal

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from .base import OwnedModel


class Tag(OwnedModel):
    """A label an owner puts on recipients; a mailing may go to everyone
    who carries it."""

    name = models.CharField(_("name"), max_length=100)
    is_public = models.BooleanField(
        _("public topic"),
        default=False,
        help_text=_(
            "Offered to recipients as a topic they may choose in the preference centre."
        ),
    )

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "owner",
                Lower("name"),
                name="tag_owner_name_ci_unique",
                violation_error_message=_("You already have a tag with this name."),
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        self.name = " ".join((self.name or "").split())
        if "," in self.name:
            # Files list a recipient's tags separated by commas.
            raise ValidationError({"name": _("A tag name cannot contain a comma.")})


# A recipient's custom field values (DESIGN.md, Client.attributes) are kept
# as JSON: text and choice as strings, numbers as numbers, dates as ISO
# strings (so they compare in order on every database), booleans as booleans.
# Words joined by single underscores: never a lookup path ("a__b").
FIELD_KEY_PATTERN = r"^(?=.{1,50}$)[a-z][a-z0-9]*(?:_[a-z0-9]+)*$"
TEXT_MAX_LENGTH = 1000
CHOICES_MAX = 100
CHOICE_MAX_LENGTH = 100
NUMBER_LIMIT = 10**15
FIELDS_MAX = 50
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on", "да", "д", "истина"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off", "нет", "н", "ложь"})
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y")


class Field(OwnedModel):
    """A custom field of one owner's recipients: `{{ client.attributes.<key> }}`
    in messages, a column in imports and exports, a question on forms."""

    class Kind(models.TextChoices):
        TEXT = "text", _("text")
        NUMBER = "number", _("number")
        DATE = "date", _("date")
        CHOICE = "choice", _("choice")
        BOOLEAN = "boolean", _("yes / no")

    key = models.CharField(
        _("key"),
        max_length=50,
        validators=[
            RegexValidator(
                FIELD_KEY_PATTERN,
                _(
                    "Use small Latin letters, digits and _, starting with a "
                    "letter (for example, city or birth_date)."
                ),
            )
        ],
        help_text=_(
            "Used in messages as {{ client.attributes.<key> }} and as the "
            "column name in imports. It cannot be changed later."
        ),
    )
    label = models.CharField(
        _("label"),
        max_length=100,
        help_text=_("What recipients and you see: a form question, a column."),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind, default=Kind.TEXT)
    choices = models.JSONField(
        _("choices"),
        default=list,
        blank=True,
        help_text=_("For the “choice” kind: the values allowed."),
    )
    is_editable = models.BooleanField(
        _("recipients may change it"),
        default=False,
        help_text=_("Shown in the preference centre, where recipients can edit it."),
    )

    class Meta:
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")
        ordering = ["label"]
        constraints = [
            models.UniqueConstraint(
                "owner",
                "key",
                name="field_owner_key_unique",
                violation_error_message=_("You already have a field with this key."),
            ),
            models.UniqueConstraint(
                "owner",
                Lower("label"),
                name="field_owner_label_ci_unique",
                violation_error_message=_("You already have a field with this label."),
            ),
        ]

    def __str__(self):
        return self.label

    def clean(self):
        super().clean()
        self.label = " ".join((self.label or "").split())
        if self._state.adding and self.owner_id is not None:
            if Field.objects.filter(owner_id=self.owner_id).count() >= FIELDS_MAX:
                raise ValidationError(
                    _("You have %(max)d custom fields, the most an account may have.")
                    % {"max": FIELDS_MAX}
                )
        if self.kind != self.Kind.CHOICE:
            self.choices = []
            return
        choices = self.choices if isinstance(self.choices, list) else []
        cleaned = []
        for choice in choices:
            choice = " ".join(str(choice).split())
            if choice and choice.casefold() not in {c.casefold() for c in cleaned}:
                cleaned.append(choice)
        if not cleaned:
            raise ValidationError(
                {"choices": _("Give at least one value to choose from.")}
            )
        if len(cleaned) > CHOICES_MAX:
            raise ValidationError(
                {"choices": _("At most %(max)d values.") % {"max": CHOICES_MAX}}
            )
        if any(len(choice) > CHOICE_MAX_LENGTH for choice in cleaned):
            raise ValidationError(
                {
                    "choices": _("Each value is at most %(max)d characters.")
                    % {"max": CHOICE_MAX_LENGTH}
                }
            )
        self.choices = cleaned

    def value_of(self, raw):
        """The value to keep for `raw` (typed, or text from a CSV or a form),
        None for an empty one; ValidationError naming what is wrong."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        convert = getattr(self, f"_{self.kind}")
        return convert(raw)

    def display(self, value) -> str:
        """A kept value as a person reads it (messages, the admin, exports)."""
        if value is None:
            return ""
        if self.kind == self.Kind.BOOLEAN:
            return str(_("yes") if value else _("no"))
        return str(value)

    def _text(self, raw):
        if not isinstance(raw, str):
            raw = str(raw)
        value = raw.strip()
        if len(value) > TEXT_MAX_LENGTH:
            raise ValidationError(
                _("“%(field)s” is at most %(max)d characters (this is %(length)d).")
                % {"field": self.label, "max": TEXT_MAX_LENGTH, "length": len(value)}
            )
        return value

    def _number(self, raw):
        if isinstance(raw, bool):
            raise self._wrong(raw)
        if isinstance(raw, int | float | decimal.Decimal):
            number = decimal.Decimal(str(raw))
        else:
            text = str(raw)[:64].strip().replace("\u00a0", "").replace(" ", "")
            try:
                number = decimal.Decimal(text.replace(",", "."))
            except decimal.InvalidOperation:
                raise self._wrong(raw) from None
        if not number.is_finite() or abs(number) >= NUMBER_LIMIT:
            raise self._wrong(raw)
        integral = number == number.to_integral_value()
        return int(number) if integral else float(number)

    def _date(self, raw):
        if isinstance(raw, datetime.datetime):
            raw = raw.date()
        if isinstance(raw, datetime.date):
            return raw.isoformat()
        text = str(raw)[:32].strip()
        for pattern in DATE_FORMATS:
            try:
                return datetime.datetime.strptime(text, pattern).date().isoformat()
            except ValueError:
                continue
        raise ValidationError(
            _(
                "“%(field)s” must be a date such as 2026-12-31 or "
                "31.12.2026, not “%(value)s”."
            )
            % {"field": self.label, "value": _shown(raw)}
        )

    def _choice(self, raw):
        text = " ".join(str(raw)[: CHOICE_MAX_LENGTH * 2].split())
        for choice in self.choices:
            if choice.casefold() == text.casefold():
                return choice
        raise ValidationError(
            _("“%(field)s” must be one of %(choices)s, not “%(value)s”.")
            % {
                "field": self.label,
                "choices": ", ".join(f"“{choice}”" for choice in self.choices[:10]),
                "value": _shown(raw),
            }
        )

    def _boolean(self, raw):
        if isinstance(raw, bool):
            return raw
        word = str(raw)[:16].strip().casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValidationError(
            _("“%(field)s” must be yes or no, not “%(value)s”.")
            % {"field": self.label, "value": _shown(raw)}
        )

    def _wrong(self, raw):
        return ValidationError(
            _("“%(field)s” must be a number, not “%(value)s”.")
            % {"field": self.label, "value": _shown(raw)}
        )


def _shown(raw) -> str:
    """A refused value as an error message quotes it: never all of a megabyte."""
    text = str(raw)
    return text if len(text) <= 40 else text[:40] + "…"


def attributes_clean(*, fields, values) -> dict:
    """The one rule for a recipient's attributes, whatever path writes them
    (the admin, an import, a form, the preference centre): every key is one
    of the owner's `fields`, every value fits its kind. Returns the values
    to keep (empty ones dropped); ValidationError lists every problem."""
    if not isinstance(values, dict):
        raise ValidationError(_("Custom field values must be a mapping of keys."))
    by_key = {field.key: field for field in fields}
    kept, problems = {}, []
    for key, raw in values.items():
        field = by_key.get(key)
        if field is None:
            problems.append(
                _("You have no custom field “%(key)s”.") % {"key": _shown(key)}
            )
            continue
        try:
            value = field.value_of(raw)
        except ValidationError as error:
            problems.extend(error.messages)
            continue
        if value is not None:
            kept[key] = value
    if problems:
        raise ValidationError(problems)
    return kept
