"""The recipient columns: the header names they go by, and their cells.

`Column` is a django-import-export field that also knows the other names a
spreadsheet gives its column; the widgets turn a cell into a value (or say
why it is not one) and back. `ClientResource` declares the columns.
"""

import re
from datetime import UTC, datetime, time

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _
from import_export import fields, widgets
from import_export.fields import NOT_PROVIDED

from .issues import file_error

# The spreadsheet row each dataset row came from (the header is row 1).
ROW_COLUMN = "row"
# OWASP's list: a spreadsheet runs a cell starting with any of these.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TRUE_WORDS = {"1", "yes", "y", "true", "x", "да", "д", "+"}
FALSE_WORDS = {"0", "no", "n", "false", "нет", "н", "-"}
LOCAL_DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")
EXPORT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def header_key(name: str) -> str:
    """`E-mail 1 - Value`, `e_mail 1 value` and `EMAIL1VALUE` are one key."""
    return re.sub(r"[\s_\-.:]+", "", name.replace("\ufeff", "").lower())


def cell_text(value) -> str:
    """A cell as text, without the apostrophe our export puts before formulas.

    Undoing the escape lets a file exported and imported again keep its
    values.
    """
    value = (value or "").strip()
    if value[:1] == "'" and value[1:2] in FORMULA_PREFIXES:
        return value[1:]
    return value


class Column(fields.Field):
    """A field read from whichever of its names the file's header uses.

    `parts` are the names of the pieces a whole value is put together from
    when the file has no column of its own for it (first, middle and last
    name: Outlook and the current Google Contacts have no whole-name column).
    """

    def __init__(self, *, aliases=(), parts=(), **kwargs):
        super().__init__(**kwargs)
        if self.readonly or "__" in self.attribute or self.default != NOT_PROVIDED:
            raise ValueError("A column is a plain writable attribute, no default.")
        names = (kwargs["column_name"], *aliases)
        self.aliases = {header_key(alias) for alias in names}
        self.parts = [{header_key(alias) for alias in names} for names in parts]

    def save(self, instance, row, is_m2m=False, **kwargs):
        # Field.save for a plain attribute and no default, which is what
        # every column is: the stock one splits the attribute path and
        # checks for a default on every cell, a fifth of an import's time
        # in its rows (cProfile, 100,000 rows).
        value = self.widget.clean(row[self.column_name], row=row, **kwargs)
        if value is not None or self.saves_null_values:
            setattr(instance, self.attribute, value)


class KeyColumn(Column):
    """The column rows are matched by: it names a new row, never renames one.

    A stored address keeps its spelling when the file writes it in other
    letter case.
    """

    def save(self, instance, row, is_m2m=False, **kwargs):
        if not getattr(instance, self.attribute):
            super().save(instance, row, is_m2m, **kwargs)


def header_columns(
    header: list[str], *, header_row: int, columns: dict[str, Column], required: str
) -> dict[str, list[int]]:
    """Where each column's cells are: one index, or the indexes of its parts.

    The first header matching a column wins; unknown columns, and so `id`
    and `owner`, are left out.
    """
    found: dict[str, list[int]] = {}
    parts: dict[str, dict[int, int]] = {}
    for index, name in enumerate(header):
        key = header_key(name)
        for column_name, column in columns.items():
            if key in column.aliases and column_name not in found:
                found[column_name] = [index]
            for part, names in enumerate(column.parts):
                if key in names:
                    parts.setdefault(column_name, {}).setdefault(part, index)
    if required not in found:
        named = [name.strip() for name in header if name.strip()]
        message = _(
            "No e-mail column found. The headers in the file are: %(headers)s. "
            "Name the column with the addresses “email”."
        ) % {"headers": ", ".join(f"“{name[:60]}”" for name in named[:30])}
        if any("@" in name for name in named):
            message += " " + _(
                "The first row looks like a recipient, not column names: "
                "add a header row such as “email,full_name,comment”."
            )
        raise file_error(message, header_row)
    for column_name, indexes in parts.items():
        if column_name not in found:
            found[column_name] = [indexes[part] for part in sorted(indexes)]
    return found


# --- widgets: a cell to a value and back ----------------------------------


class EmailWidget(widgets.CharWidget):
    """An address, normalised: lower case, the first of Google's " ::: " list."""

    def __init__(self, *, max_length: int):
        super().__init__(allow_blank=False)
        self.max_length = max_length

    @staticmethod
    def key(value) -> str:
        """The address as rows are matched by, checked or not."""
        # Google Contacts puts several addresses in one cell: the first wins.
        return cell_text(value).lower().split(" ::: ", 1)[0].strip()

    def clean(self, value, row=None, **kwargs):
        address = self.key(value)
        if not address:
            return None
        try:
            if len(address) > self.max_length:
                raise ValidationError("too long")
            validate_email(address)
        except ValidationError:
            raise ValueError(
                _("“%(value)s” is not a valid e-mail address.")
                % {"value": address[:100]}
            ) from None
        return address


class TextWidget(widgets.CharWidget):
    """Text; an empty cell is no value, so the stored text stays."""

    def __init__(self, *, max_length: int | None = None, too_long: str = ""):
        super().__init__(allow_blank=False)
        self.max_length = max_length
        self.too_long = too_long

    def clean(self, value, row=None, **kwargs):
        text = cell_text(value)
        if not text:
            return None
        if self.max_length is not None and len(text) > self.max_length:
            raise ValueError(str(self.too_long) % {"max": self.max_length})
        return text


class UnsubscribedWidget(widgets.DateTimeWidget):
    """A date or time, or yes/no in English or Russian; "no" is no value."""

    def __init__(self):
        super().__init__(format=EXPORT_DATE_FORMAT)

    def clean(self, value, row=None, **kwargs):
        raw = cell_text(value)
        word = raw.lower()
        if not raw or word in FALSE_WORDS:
            return None
        if word in TRUE_WORDS:
            return timezone.now()
        try:
            moment = parse_datetime(raw)
            if moment is None and (day := parse_date(raw)):
                moment = datetime.combine(day, time())
        except ValueError:
            moment = None
        for date_format in LOCAL_DATE_FORMATS:
            if moment is not None:
                break
            try:
                moment = datetime.strptime(raw, date_format)
            except ValueError:
                pass
        if moment is None:
            raise ValueError(
                _(
                    "“%(value)s” in the unsubscribed column is neither "
                    "a date nor yes/no."
                )
                % {"value": raw[:50]}
            )
        try:
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            # What the database keeps, in UTC: 01.01.0001 in Moscow is not.
            moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError(
                _("“%(value)s” in the unsubscribed column is not a date we can keep.")
                % {"value": raw[:50]}
            ) from None
        return moment


# --- the owner's custom fields and tags -----------------------------------

# A header the file has and no column of ours names: kept in the dataset
# under this prefix, so the owner's custom fields can claim it.
EXTRA_PREFIX = "extra:"
# Never offered as a custom field: our own export's columns of other meanings.
NOT_FIELDS = {"id", "owner", "row", "attributes"}
MAX_TAGS_PER_CELL = 100
# Google Contacts marks its own groups with "* " (“* myContacts”, “* starred”).
SYSTEM_LABEL_PREFIX = "* "


class AttributeWidget(widgets.Widget):
    """A cell as one custom field's value, by the field's own rule."""

    def __init__(self, *, field):
        super().__init__()
        self.field = field

    def clean(self, value, row=None, **kwargs):
        text = cell_text(value)
        if not text:
            return None
        try:
            return self.field.value_of(text)
        except ValidationError as error:
            raise ValueError(" ".join(error.messages)) from None

    def render(self, value, obj=None, **kwargs):
        return self.field.display(value)


class AttributeColumn(Column):
    """A column filling one custom field of the recipient's attributes; an
    empty cell keeps the stored value."""

    def __init__(self, *, field, column_name):
        super().__init__(
            attribute=f"attribute_{field.key}",
            column_name=column_name,
            widget=AttributeWidget(field=field),
            saves_null_values=False,
        )
        self.key = field.key

    def get_value(self, instance):
        return (instance.attributes or {}).get(self.key)

    def save(self, instance, row, is_m2m=False, **kwargs):
        value = self.widget.clean(row[self.column_name], row=row, **kwargs)
        if value is not None and instance.attributes.get(self.key) != value:
            # A new dict: the stored one is what the row is compared with.
            instance.attributes = {**instance.attributes, self.key: value}


def tag_names_sorted(names) -> list[str]:
    """A recipient's tags in the order a file lists them."""
    return sorted(names, key=str.casefold)


class TagsColumn(Column):
    """The tags column: names read into `tag_names` (linked after the rows
    are written), and the recipient's tags when exported."""

    def get_value(self, instance):
        if instance.pk is None:
            return []  # a row not written yet has no tags of its own
        return tag_names_sorted(tag.name for tag in instance.tags.all())


class TagsWidget(widgets.Widget):
    """Tag names: comma-separated, or Google's “ ::: ” list; Mailchimp's
    quoted names; Google's own groups left out."""

    def __init__(self, *, max_length: int):
        super().__init__()
        self.max_length = max_length

    def clean(self, value, row=None, **kwargs):
        text = cell_text(value)
        if not text:
            return None
        parts = text.split(" ::: ") if " ::: " in text else text.split(",")
        if len(parts) > MAX_TAGS_PER_CELL:
            raise ValueError(
                _("a row may carry at most %(max)d tags (this one has %(count)d).")
                % {"max": MAX_TAGS_PER_CELL, "count": len(parts)}
            )
        names = {}
        for part in parts:
            name = " ".join(part.strip().strip('"').split())
            if not name or name.startswith(SYSTEM_LABEL_PREFIX):
                continue
            if "," in name:
                raise ValueError(
                    _("the tag “%(tag)s” holds a comma, which tag names cannot.")
                    % {"tag": name[:30]}
                )
            if len(name) > self.max_length:
                raise ValueError(
                    _("the tag “%(tag)s…” is longer than %(max)d characters.")
                    % {"tag": name[:30], "max": self.max_length}
                )
            names.setdefault(name.casefold(), name)
        return list(names.values()) or None

    def render(self, value, obj=None, **kwargs):
        return ", ".join(value or ())
