"""Segments: recipients chosen by rules, computed when asked (DESIGN.md,
Domain model, Segment). The JSON of `Segment.rules` is the storage and the
contract; the admin edits it as rows of condition, operator and value.

A rule is checked against the owner's fields, tags and mailings when it is
saved (`rules_clean`), and compiled into one filter on the recipients
(`Segment.members_q`), which SQLite and PostgreSQL both run as one query.
"""

import datetime

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .audience import Field, Tag
from .base import OwnedModel, OwnedQuerySet
from .clients import Client
from .mailings import Attempt, Mailing

CONDITIONS_MAX = 20
VALUES_MAX = 100
DAYS_MAX = 3650
ATTRIBUTE = "attributes."


class Op(models.TextChoices):
    EQ = "eq", _("is")
    NE = "ne", _("is not")
    CONTAINS = "contains", _("contains")
    GT = "gt", _("is greater than / after")
    LT = "lt", _("is less than / before")
    IN = "in", _("is one of")
    HAS = "has", _("has")
    NOT_HAS = "not_has", _("has not")


class Match(models.TextChoices):
    ALL = "all", _("all conditions")
    ANY = "any", _("any condition")


# What each kind of subject may be compared with.
TEXT_OPS = (Op.EQ, Op.NE, Op.CONTAINS, Op.IN)
OPS = {
    "text": TEXT_OPS,
    "number": (Op.EQ, Op.NE, Op.GT, Op.LT),
    "date": (Op.EQ, Op.NE, Op.GT, Op.LT),
    "choice": (Op.EQ, Op.NE, Op.IN),
    "boolean": (Op.EQ, Op.NE),
    "tag": (Op.HAS, Op.NOT_HAS),
    "event": (Op.HAS, Op.NOT_HAS),
}
FIXED_SUBJECTS = {
    "email": ("text", _("e-mail")),
    "full_name": ("text", _("full name")),
    "created_at": ("date", _("added on")),
    "tag": ("tag", _("tag")),
    "received": ("event", _("was sent")),
    "opened": ("event", _("opened")),
    "clicked": ("event", _("clicked")),
}
EVENT_COLUMNS = {
    "received": "attempted_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
}


def rules_empty() -> dict:
    return {"match": Match.ALL.value, "conditions": []}


def subjects(*, fields) -> dict:
    """Every subject a condition may name for an owner with these `fields`:
    name → (kind, label, the Field or None)."""
    found = {
        name: (kind, label, None) for name, (kind, label) in FIXED_SUBJECTS.items()
    }
    for field in fields:
        found[ATTRIBUTE + field.key] = (field.kind, field.label, field)
    return found


def rules_clean(rules, *, owner_id) -> dict:
    """The rules to keep, each value in its kept form; ValidationError with
    one message per wrong condition, numbered as the editor shows them."""
    if not isinstance(rules, dict) or not isinstance(rules.get("conditions"), list):
        raise ValidationError(_("Rules must be a match and a list of conditions."))
    match = rules.get("match", Match.ALL)
    if match not in Match.values:
        raise ValidationError(_("Match all conditions or any of them."))
    conditions = rules["conditions"]
    if len(conditions) > CONDITIONS_MAX:
        raise ValidationError(
            _("A segment has at most %(max)d conditions.") % {"max": CONDITIONS_MAX}
        )
    known = subjects(fields=Field.objects.filter(owner_id=owner_id))
    kept, problems = [], []
    for number, condition in enumerate(conditions, start=1):
        try:
            kept.append(_condition_clean(condition, known=known, owner_id=owner_id))
        except ValidationError as error:
            problems.extend(
                _("Condition %(number)d: %(problem)s")
                % {"number": number, "problem": message}
                for message in error.messages
            )
    if problems:
        raise ValidationError(problems)
    return {"match": match, "conditions": kept}


def _condition_clean(condition, *, known, owner_id) -> dict:
    if not isinstance(condition, dict):
        raise ValidationError(_("a condition is a field, an operator and a value."))
    name, op, value = (
        condition.get("field"),
        condition.get("op"),
        condition.get("value"),
    )
    if not isinstance(name, str) or name not in known:
        raise ValidationError(
            _("there is no field “%(field)s” to compare.") % {"field": str(name)[:60]}
        )
    kind, label, field = known[name]
    if op not in OPS[kind]:
        raise ValidationError(
            _("“%(field)s” cannot be compared with “%(op)s”.")
            % {"field": label, "op": str(op)[:20]}
        )
    if kind == "tag":
        value = _tag_value(value, owner_id=owner_id)
    elif kind == "event":
        value = _event_value(value, owner_id=owner_id)
    elif op == Op.IN:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list) or not value:
            raise ValidationError(_("give one or more values, separated by commas."))
        if len(value) > VALUES_MAX:
            raise ValidationError(_("at most %(max)d values.") % {"max": VALUES_MAX})
        value = [_scalar(item, kind=kind, label=label, field=field) for item in value]
        value = [item for item in value if item is not None]
        if not value:
            raise ValidationError(_("give one or more values, separated by commas."))
    else:
        value = _scalar(value, kind=kind, label=label, field=field)
        if value is None:
            raise ValidationError(_("give a value to compare with."))
    return {"field": name, "op": op, "value": value}


def _scalar(value, *, kind, label, field):
    if field is not None:
        return field.value_of(value)
    if isinstance(value, dict | list):
        raise ValidationError(_("give a single value."))
    # e-mail, full name (text) and the day a recipient was added (date)
    return Field(label=str(label), kind=kind).value_of(value)


def _tag_value(value, *, owner_id) -> int:
    tags = Tag.objects.filter(owner_id=owner_id)
    if isinstance(value, int) and not isinstance(value, bool):
        tag = tags.filter(pk=value).first()
    elif isinstance(value, str) and value.strip():
        text = " ".join(value.split())
        tag = tags.filter(Q(name__iexact=text) | Q(pk=_int_or_none(text))).first()
    else:
        tag = None
    if tag is None:
        raise ValidationError(
            _("you have no tag “%(tag)s”.") % {"tag": str(value)[:60]}
        )
    return tag.pk


def _event_value(value, *, owner_id) -> dict:
    if not isinstance(value, dict):
        value = {"mailing": "any", "days": value}
    mailing, days = value.get("mailing", "any"), value.get("days")
    if mailing in (None, "", "any"):
        mailing = "any"
    else:
        pk = _int_or_none(mailing)
        if pk is None or not Mailing.objects.filter(pk=pk, owner_id=owner_id).exists():
            raise ValidationError(
                _("you have no mailing “%(mailing)s”.") % {"mailing": str(mailing)[:60]}
            )
        mailing = pk
    days = _int_or_none(days)
    if days is None or not 1 <= days <= DAYS_MAX:
        raise ValidationError(
            _("give a number of days from 1 to %(max)d.") % {"max": DAYS_MAX}
        )
    return {"mailing": mailing, "days": days}


def _int_or_none(value):
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


# --- the rules as a filter --------------------------------------------------


def rules_q(rules, *, fields, now=None) -> Q:
    """Recipients the (cleaned) rules select. A condition whose field or tag
    is gone since matches nobody: a segment never grows by a deletion."""
    now = now or timezone.now()
    known = subjects(fields=fields)
    parts = [
        _condition_q(condition, known=known, now=now)
        for condition in rules["conditions"]
    ]
    if not parts:
        return Q(pk__in=[])  # no condition: nobody, not everybody
    combined = parts[0]
    for part in parts[1:]:
        combined = combined | part if rules["match"] == Match.ANY else combined & part
    return combined


NOBODY = Q(pk__in=[])


def _condition_q(condition, *, known, now) -> Q:
    name, op, value = condition["field"], condition["op"], condition["value"]
    if name not in known or op not in OPS[known[name][0]]:
        return NOBODY
    kind = known[name][0]
    if kind == "tag":
        through = Client.tags.through.objects.filter(
            client_id=OuterRef("pk"), tag_id=value
        )
        # A tag deleted since matches nobody, whichever the operator.
        if not Tag.objects.filter(pk=value).exists():
            return NOBODY
        has = Q(Exists(through))
        return has if op == Op.HAS else ~has
    if kind == "event":
        since = now - datetime.timedelta(days=value["days"])
        attempts = Attempt.objects.filter(
            client_id=OuterRef("pk"), **{f"{EVENT_COLUMNS[name]}__gte": since}
        )
        if name == "received":  # sent and accepted, not tried and failed
            attempts = attempts.filter(status=Attempt.Status.SENT)
        if value["mailing"] != "any":
            attempts = attempts.filter(run__mailing_id=value["mailing"])
        has = Q(Exists(attempts))
        return has if op == Op.HAS else ~has
    text = kind in ("text", "choice")
    if op == Op.IN:
        # Text compares regardless of case, as recipients type it.
        lookup = Q()
        for item in value:
            lookup |= _compare(name, "iexact" if text else "exact", item)
        return lookup
    if op == Op.CONTAINS:
        return _compare(name, "icontains", value)
    if op in (Op.GT, Op.LT):
        return _compare(name, op, value)
    equal = _compare(name, "iexact" if text else "exact", value)
    if op == Op.EQ:
        return equal
    # "is not": recipients without a value are not equal to it either.
    if name.startswith(ATTRIBUTE):
        return ~equal | _compare(name, "isnull", True)
    return ~equal


def _compare(name: str, lookup: str, value) -> Q:
    """One comparison, its lookup always named: "attributes__isnull__exact"
    reads a custom field keyed "isnull" (keys hold no "__"), where
    "attributes__isnull" would ask whether there are attributes at all."""
    if name == "created_at":
        column = "created_at__date"
    elif name.startswith(ATTRIBUTE):
        column = "attributes__" + name[len(ATTRIBUTE) :]
    else:
        column = name
    return Q(**{f"{column}__{lookup}": value})


class SegmentQuerySet(OwnedQuerySet):
    pass


class Segment(OwnedModel):
    """Recipients chosen by rules on their fields, tags and activity."""

    name = models.CharField(_("name"), max_length=100)
    rules = models.JSONField(_("rules"), default=rules_empty)

    objects = SegmentQuerySet.as_manager()

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "owner",
                Lower("name"),
                name="segment_owner_name_ci_unique",
                violation_error_message=_("You already have a segment with this name."),
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        self.name = " ".join((self.name or "").split())
        if self.owner_id is not None:
            try:
                self.rules = rules_clean(self.rules, owner_id=self.owner_id)
            except ValidationError as error:
                raise ValidationError({"rules": error.messages}) from None

    def members_q(self, *, fields=None, now=None) -> Q:
        """The filter on the owner's recipients that selects the members."""
        if fields is None:
            fields = Field.objects.filter(owner_id=self.owner_id)
        return rules_q(self.rules, fields=fields, now=now)

    def members(self, *, now=None):
        return Client.objects.filter(owner_id=self.owner_id).filter(
            self.members_q(now=now)
        )
