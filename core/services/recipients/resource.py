"""The recipients' django-import-export resource, and its file format.

Import runs the library's own pipeline: `RecipientCSV` reads the file into a
dataset, `ClientResource.import_data` takes each row through its widgets,
instance loader and bulk writes, in one transaction that any invalid row
rolls back; a dry run (the admin's check) writes nothing. What the resource
adds:

- the owner: set when the resource is made, on every new row
  (`init_instance`), and the only list rows are looked up in
  (`get_queryset`, the loader). A file has no `id` or `owner` column to
  name: the dataset holds only the resource's columns;
- rows repeating an address fold into the row that first named it (later
  non-empty values win), and are counted as merged;
- a stored unsubscribe is never undone or moved, a suppressed address is
  imported as unsubscribed (and counted), and an unsubscribe the file brings
  is suppressed for good (DESIGN.md, List health);
- the owner's custom fields claim the file's other columns by key or label
  (case-insensitively), the user may create fields for the rest when they
  confirm, and a tags column adds tags (never removes one);
- the owner's word that these people consented, recorded as a `Consent`
  of each kind for every recipient the import adds;
- speed where the stock path is slow, each said where it is done.
"""

from collections import Counter
from operator import attrgetter

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export import resources
from import_export.fields import Field
from import_export.formats import base_formats
from import_export.instance_loaders import BaseInstanceLoader
from import_export.results import RowResult

from core.models import Client, Consent, Suppression, Tag, User
from core.models import Field as CustomField
from core.models.suppressions import email_digest
from core.models.users import email_normalize

from .columns import (
    EXTRA_PREFIX,
    ROW_COLUMN,
    AttributeColumn,
    Column,
    EmailWidget,
    KeyColumn,
    TagsColumn,
    TagsWidget,
    TextWidget,
    UnsubscribedWidget,
    header_key,
)
from .issues import file_error
from .results import ClientImportResult, ClientRowResult
from .rows import sheet_read
from .writing import clients_update_rows, owner_lock

EXPORT_COLUMNS = ("email", "full_name", "comment", "unsubscribed_at")
# Rows per INSERT or UPDATE batch; each carries its three permission grants.
WRITE_BATCH = 5000
EXPORT_BATCH = 2000
PREVIEW_ROWS = 20
# In the model's field order, which Client.from_db reads them in.
STORED_FIELDS = (
    "id",
    "owner_id",
    "email",
    "full_name",
    "comment",
    "attributes",
    "unsubscribed_at",
)
# New tags one import may create.
MAX_NEW_TAGS = 1000


# What the owner confirms before an import, recorded as each new recipient's
# consent (the service's language: the record must show the words agreed).
CONSENT_TEXT = gettext_lazy(
    "I confirm that everyone in this file agreed to the processing of their "
    "personal data and to receive my mailings, and that I can show it."
)


class ImportConsent:
    """What the owner confirmed of the people in the file, and from where."""

    def __init__(self, *, text: str, ip=None, user_agent: str = ""):
        self.text, self.ip, self.user_agent = text, ip, user_agent


class OwnListLoader(BaseInstanceLoader):
    """The owner's recipients the file names, by lower(email).

    Goes around the stock loaders for speed and for case: ModelInstanceLoader
    asks the database once per row (1,100 rows/s for 100,000 new rows on
    SQLite, 880 for updates, against 5,900 and 7,700 with this one, measured
    side by side), and CachedInstanceLoader sends every address of the file
    as one case-sensitive `email IN (…)` list. `ClientResource.before_import`
    reads the owner's list once and keeps only the rows the file names.
    Rows met earlier in the file are handed out again, which is how repeated
    addresses merge (the stock loaders cannot: a repeated new address fails
    the insert).
    """

    def get_instance(self, row):
        return self.resource.by_email.get(self.resource.row_key)


class ClientResource(resources.ModelResource):
    """Recipient rows of one owner's list, as CSV columns."""

    email = KeyColumn(
        attribute="email",
        column_name="email",
        aliases=(
            "e-mail",
            "e-mail address",
            "email address",
            "e-mail 1 - value",  # Google Contacts
            "primary email",
            "mail",
            "почта",
            "электронная почта",
            "адрес электронной почты",
            "e-mail адрес",
        ),
        widget=EmailWidget(max_length=Client._meta.get_field("email").max_length),
    )
    full_name = Column(
        attribute="full_name",
        column_name="full_name",
        aliases=("name", "full name", "display name", "имя", "фио", "ф.и.о."),
        parts=(
            ("first name", "given name"),
            ("middle name", "additional name"),
            ("last name", "family name", "surname"),
        ),
        widget=TextWidget(
            max_length=Client._meta.get_field("full_name").max_length,
            too_long=gettext_lazy("the name is longer than %(max)d characters."),
        ),
        # An empty cell keeps the stored value (and an earlier row's).
        saves_null_values=False,
    )
    comment = Column(
        attribute="comment",
        column_name="comment",
        aliases=(
            "comments",
            "note",
            "notes",
            "комментарий",
            "комментарии",
            "примечание",
            "примечания",
        ),
        widget=TextWidget(
            max_length=Client._meta.get_field("comment").max_length,
            too_long=gettext_lazy("the comment is longer than %(max)d characters."),
        ),
        saves_null_values=False,
    )
    unsubscribed_at = Column(
        attribute="unsubscribed_at",
        column_name="unsubscribed_at",
        aliases=("unsubscribed", "отписан", "отписка", "дата отписки"),
        widget=UnsubscribedWidget(),
        # "no" and an empty cell are no value: an import never renews a
        # subscription.
        saves_null_values=False,
    )
    # Names only: the rows' tags are linked after the rows are written.
    tags = TagsColumn(
        attribute="tag_names",
        column_name="tags",
        aliases=(
            "tag",
            "labels",  # Google Contacts
            "теги",
            "тег",
            "метки",
            "группы",
        ),
        widget=TagsWidget(max_length=Tag._meta.get_field("name").max_length),
        saves_null_values=False,
    )

    class Meta:
        model = Client
        fields = (*EXPORT_COLUMNS, "tags")
        import_id_fields = ("email",)
        instance_loader_class = OwnListLoader
        use_bulk = True
        batch_size = WRITE_BATCH
        skip_unchanged = True
        # No per-row copy and diff of the instance. The stock skip_row needs
        # them (skip_diff=False): 100,000 rows on SQLite went at 4,100 rows/s
        # new and 2,600 updated, in 413 MB, against 5,300 and 8,800 in 266 MB
        # without, measured side by side. skip_row below compares with the
        # stored values the loader keeps instead, and our confirm page lists
        # counts and the first rows, not diffs.
        skip_diff = True
        # The widgets check every cell (address, length, date); full_clean
        # checks them again and asks the database, row by row, whether the
        # owner exists and the address is taken, which the loader knows:
        # 600 rows/s new and 390 updated with it.
        clean_model_instances = False
        use_transactions = True
        chunk_size = EXPORT_BATCH
        name = gettext_lazy("Recipients")

    def __init__(
        self,
        *,
        owner: User | None = None,
        with_owner: bool = False,
        fields_of: User | None = None,
        consent: ImportConsent | None = None,
        new_fields: dict | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.owner = owner
        self.consent = consent
        # Header → (key, kind) of the fields the user asked to create.
        self.new_fields = new_fields or {}
        if fields_of is not None:
            # An export of one owner's list: a column for each custom field,
            # named by its key as an import reads it back.
            tags = self.fields.pop("tags")
            for field in CustomField.objects.filter(owner=fields_of):
                self.fields[f"attributes.{field.key}"] = AttributeColumn(
                    field=field, column_name=field.key
                )
            self.fields["tags"] = tags
        if with_owner:
            # For those who see every list: whose recipient each row is.
            self.fields["owner"] = Field(
                attribute="owner__email", column_name="owner", readonly=True
            )
        self.email_column = self.fields["email"].column_name
        self._import_fields = super().get_import_fields()
        self._import_values = attrgetter(
            "email", "full_name", "comment", "unsubscribed_at", "attributes"
        )

    @classmethod
    def get_result_class(cls):
        return ClientImportResult

    @classmethod
    def get_row_result_class(cls):
        return ClientRowResult

    @classmethod
    def columns(cls) -> dict[str, Column]:
        """The columns every file may have (custom fields come per owner)."""
        return {name: f for name, f in cls.fields.items() if isinstance(f, Column)}

    def get_queryset(self):
        return Client.objects.owned_by(self.owner)

    def get_export_order(self):
        # The stored columns, the owner's custom fields, the tags, the owner.
        dynamic = tuple(name for name in self.fields if name.startswith("attributes."))
        owner = ("owner",) if "owner" in self.fields else ()
        return (*EXPORT_COLUMNS, *dynamic, "tags", *owner)

    def get_bulk_update_fields(self):
        # The columns a row writes, as model fields: custom fields go into
        # `attributes`, tags are linked apart (see _link_tags).
        return ["full_name", "comment", "unsubscribed_at", "attributes"]

    def get_import_fields(self):
        # Asked for every row, and the order never changes during an import.
        return self._import_fields

    def import_values(self, instance) -> tuple:
        """What the import writes of a recipient, to tell if it changed."""
        return self._import_values(instance)

    def import_data(self, dataset, dry_run=False, **kwargs):
        if self.owner is None:
            raise ValueError("ClientResource imports into an owner's list: pass owner.")
        if not dry_run and self.consent is None:
            raise file_error(
                _(
                    "Confirm that the people in the file agreed to receive "
                    "your mailings: nothing was imported."
                )
            )
        self.dry_run = dry_run
        return super().import_data(dataset, dry_run=dry_run, **kwargs)

    # --- the import, in the order the library calls it --------------------

    def before_import(self, dataset, **kwargs):
        if not self.dry_run:
            owner_lock(owner=self.owner)
        self.unknown_columns: list[str] = []
        self.row_tags: dict[str, dict[str, str]] = {}
        self.by_email: dict[str, Client] = {}
        # What the database holds for an address: before the import, and
        # what the import wrote since for an address the file repeats.
        self.stored: dict[str, tuple] = {}
        self.flushed: dict[str, tuple] = {}
        self.stored_ends = {}
        self.queued: set[int] = set()
        self.first_rows: dict[str, ClientRowResult] = {}
        self.no_address: list[int] = []
        self.merged = 0
        # Suppressed address → since when; how many of the file's are.
        self.suppressed: dict = {}
        self.suppressed_rows = 0
        counts = Counter(map(EmailWidget.key, dataset[self.email_column]))
        self.repeated = {key for key, count in counts.items() if count > 1}
        self._load_stored(counts)
        # Last: a field it cannot create stops the import with the reason.
        self._claim_columns(dataset)

    def _claim_columns(self, dataset) -> None:
        """The owner's custom fields take the file's other columns whose
        header is their key or label; fields the user asked for are created
        first (when importing). What is left is listed as unknown."""
        if not self.dry_run:
            self._create_fields(dataset)
        fields = {}
        owned = CustomField.objects.filter(owner=self.owner)
        for field in owned.only("key", "label", "kind", "choices"):
            fields.setdefault(header_key(field.key), field)
            fields.setdefault(header_key(field.label), field)
        headers, self.unknown_columns = [], []
        claimed = set()
        for header in dataset.headers:
            if not header.startswith(EXTRA_PREFIX):
                headers.append(header)
                continue
            name = header[len(EXTRA_PREFIX) :]
            field = fields.get(header_key(name))
            if field is None or field.key in claimed:
                self.unknown_columns.append(name)
                headers.append(header)
                continue
            claimed.add(field.key)
            column_name = f"attributes.{field.key}"
            self.fields[column_name] = AttributeColumn(
                field=field, column_name=column_name
            )
            headers.append(column_name)
        dataset.headers = headers
        self._import_fields = super().get_import_fields()

    def _create_fields(self, dataset) -> None:
        present = {
            header[len(EXTRA_PREFIX) :]
            for header in dataset.headers
            if header.startswith(EXTRA_PREFIX)
        }
        problems = []
        for name, (key, kind) in self.new_fields.items():
            if name not in present:
                continue  # not a column of this file: nothing to create
            field = CustomField(owner=self.owner, key=key, label=name, kind=kind)
            try:
                field.full_clean()
            except ValidationError as error:
                problems += [
                    _("Column “%(column)s”: %(problem)s")
                    % {"column": name, "problem": message}
                    for message in error.messages
                ]
                continue
            field.save()
        if problems:
            raise file_error(" ".join(problems))

    def _load_stored(self, named) -> None:
        """The owner's recipients whose address the file `named`, in one read."""
        queryset = self.get_queryset().order_by()
        stored = queryset.values_list(*STORED_FIELDS).iterator(chunk_size=10000)
        for values in stored:
            key = values[2].lower()
            if key in named:
                instance = Client.from_db(queryset.db, STORED_FIELDS, values)
                self.by_email[key] = instance
                self.stored[key] = self.import_values(instance)
                if instance.unsubscribed_at is not None:
                    self.stored_ends[key] = instance.unsubscribed_at
        suppressions = (
            Suppression.objects.applying_to(owner_id=self.owner.pk)
            .order_by("created_at")
            .values_list("email", "created_at")
        )
        # An erased address is kept as its digest only.
        erased = {email_digest(email): email for email in named}
        for email, since in suppressions.iterator(chunk_size=10000):
            if email in named:
                self.suppressed.setdefault(email, since)
            elif email in erased:
                self.suppressed.setdefault(erased[email], since)

    def before_import_row(self, row, **kwargs):
        # The address as rows are matched by; whether it is one at all, the
        # widget says in import_instance. An invalid one matches nothing
        # stored, and its repeats fail each on its own row.
        self.row_key = EmailWidget.key(row[self.email_column])

    def init_instance(self, row=None):
        return Client(owner_id=self.owner.pk, source=Client.Source.IMPORT)

    def after_init_instance(self, instance, new, row, **kwargs):
        # Later rows with this address get this instance from the loader.
        if self.row_key:
            self.by_email.setdefault(self.row_key, instance)

    def import_instance(self, instance, row, **kwargs):
        try:
            instance.tag_names = None
            super().import_instance(instance, row, **kwargs)
            if instance.tag_names and self.row_key:
                named = self.row_tags.setdefault(self.row_key, {})
                for name in instance.tag_names:
                    named.setdefault(name.casefold(), name)
        finally:
            # A stored unsubscribe stays as it is, whatever the file says.
            if ended := self.stored_ends.get(self.row_key):
                instance.unsubscribed_at = ended
            elif instance.unsubscribed_at is None:
                instance.unsubscribed_at = self.suppressed.get(self.row_key)

    def skip_row(self, instance, original, row, import_validation_errors=None):
        # A row with no address (a phone-only contact) has nothing to import;
        # its other cells do not matter.
        if not self.row_key:
            return True
        if not self._meta.skip_unchanged or import_validation_errors:
            return False
        if id(instance) in self.queued:
            return False  # an earlier row's; save_instance leaves it queued
        held = self.flushed.get(self.row_key) or self.stored.get(self.row_key)
        return held is not None and self.import_values(instance) == held

    def save_instance(self, instance, is_create, row, **kwargs):
        # A repeated address: the first row's instance is queued already and
        # carries this row's values too.
        if id(instance) in self.queued:
            return
        self.queued.add(id(instance))
        super().save_instance(instance, instance.pk is None, row, **kwargs)

    def after_import_row(self, row, row_result, **kwargs):
        row_result.number = row[ROW_COLUMN]
        if not row_result.is_valid():
            return
        if not self.row_key:
            self.no_address.append(row_result.number)
            return
        if self.row_key not in self.first_rows:
            self.first_rows[self.row_key] = row_result
            if self.row_key in self.suppressed:
                self.suppressed_rows += 1
            return
        row_result.import_type = RowResult.IMPORT_TYPE_SKIP
        self.merged += 1

    def bulk_create(self, using_transactions, dry_run, raise_errors, **kwargs):
        written = list(self.create_instances)
        if dry_run:
            # A check writes nothing. The library would insert every row and
            # roll back: the admin's check of 100,000 new rows took 19.1 s
            # that way and 9.7 s this way, on SQLite. The confirmed import
            # finds what only the database can (an address added meanwhile),
            # and then imports nothing.
            self.create_instances.clear()
        else:
            # Client.objects.bulk_create (OwnedQuerySet) grants the owner's
            # view, change and delete permissions on every row it inserts:
            # bulk mode sends no post_save.
            super().bulk_create(using_transactions, dry_run, raise_errors, **kwargs)
            self._suppress(written)
            self._record_consent(written)
        self._flushed(written)

    def _record_consent(self, written):
        """The owner vouched for everyone the file adds: each gets both
        consents, in the owner's words, from where the owner confirmed."""
        # Not for an address imported as unsubscribed or suppressed: the
        # person said no, whatever the file says.
        ids = [
            recipient.pk
            for recipient in written
            if recipient.pk is not None and recipient.unsubscribed_at is None
        ]
        for kind in Consent.Kind.values:
            Consent.objects.record_many(
                owner_id=self.owner.pk,
                client_ids=ids,
                kind=kind,
                text=self.consent.text,
                source=Consent.IMPORT,
                ip=self.consent.ip,
                user_agent=self.consent.user_agent,
            )

    def bulk_update(
        self, using_transactions, dry_run, raise_errors, batch_size=None, result=None
    ):
        # The library's bulk_update, with our set-based UPDATE in place of
        # QuerySet.bulk_update (see clients_update_rows); a check writes
        # nothing (see bulk_create).
        written = list(self.update_instances)
        self.update_instances.clear()
        if written and not dry_run:
            rows = [
                (c.pk, c.full_name, c.comment, c.unsubscribed_at, c.attributes)
                for c in written
            ]
            try:
                clients_update_rows(owner=self.owner, rows=rows)
                self._suppress(written)
            except Exception as e:
                self.handle_import_error(result, e, raise_errors)
        self._flushed(written)

    def _suppress(self, written):
        """Bulk writes skip Client.save: the file's unsubscribes stick here."""
        for since, group in _by_date(
            recipient
            for recipient in written
            if recipient.unsubscribed_at is not None
            and email_normalize(recipient.email) not in self.suppressed
        ):
            Suppression.objects.record(
                owner_id=self.owner.pk,
                emails=[recipient.email for recipient in group],
                reason=Suppression.Reason.UNSUBSCRIBED,
                detail="import",
                at=since,
            )

    def _flushed(self, written):
        self.queued.difference_update(map(id, written))
        for recipient in written:
            if (key := recipient.email.lower()) in self.repeated:
                self.flushed[key] = self.import_values(recipient)

    def after_import(self, dataset, result, **kwargs):
        # Not ModelResource.after_import: it resets the id sequence to
        # max(id), for files that bring their own ids (ours never do), and on
        # PostgreSQL that could hand a concurrent import's ids out again.
        result.merged = self.merged
        result.suppressed = self.suppressed_rows
        result.skipped_rows = self.no_address
        result.unknown_columns = self.unknown_columns
        self._settle_merged(result)
        self._link_tags(result)
        for key, first in list(self.first_rows.items())[:PREVIEW_ROWS]:
            recipient = self.by_email[key]
            result.preview.append(
                (
                    first.number,
                    first.import_type,
                    recipient.email,
                    recipient.full_name,
                    recipient.comment,
                )
            )
        if not self.first_rows and self.no_address and not result.invalid_rows:
            raise file_error(_("None of the rows has an e-mail address."))

    def _link_tags(self, result):
        """Each valid row's tags on its recipient: the missing tags created,
        none taken away. A check only counts what would be created."""
        valid = {key for key in self.row_tags if key in self.first_rows}
        named = {}
        for key in valid:
            for folded, name in self.row_tags[key].items():
                named.setdefault(folded, name)
        existing = {
            tag.name.casefold(): tag
            for tag in Tag.objects.filter(owner=self.owner).only("name")
        }
        new = [name for folded, name in named.items() if folded not in existing]
        if len(new) > MAX_NEW_TAGS:
            raise file_error(
                _("The file names %(count)d new tags; one import may create %(max)d.")
                % {"count": len(new), "max": MAX_NEW_TAGS}
            )
        result.new_tags = sorted(new, key=str.casefold)
        result.tagged = len(valid)
        if self.dry_run or not valid:
            return
        # OwnedQuerySet.bulk_create grants the owner's permissions on them.
        created = Tag.objects.bulk_create(
            [Tag(owner=self.owner, name=name) for name in new]
        )
        existing.update((tag.name.casefold(), tag) for tag in created)
        through = Client.tags.through
        through.objects.bulk_create(
            [
                through(client_id=self.by_email[key].pk, tag_id=existing[folded].pk)
                for key in valid
                for folded in self.row_tags[key]
            ],
            batch_size=WRITE_BATCH,
            ignore_conflicts=True,
        )

    def _settle_merged(self, result):
        """Count a repeated address once, by its final values against the stored.

        Its first row was counted before the later ones were read: a stored
        recipient that only a later row changes is updated, one that a row
        changes and a later one changes back is unchanged.
        """
        for key in self.repeated & self.first_rows.keys():
            first = self.first_rows[key]
            if key not in self.stored:
                continue  # new: created once, whatever its rows said
            unchanged = self.import_values(self.by_email[key]) == self.stored[key]
            skip, update = RowResult.IMPORT_TYPE_SKIP, RowResult.IMPORT_TYPE_UPDATE
            settled = skip if unchanged else update
            result.totals[first.import_type] -= 1
            result.totals[settled] += 1
            first.import_type = settled


def _by_date(recipients):
    """The recipients grouped by their unsubscribe date."""
    groups = {}
    for recipient in recipients:
        groups.setdefault(recipient.unsubscribed_at, []).append(recipient)
    return groups.items()


class RecipientCSV(base_formats.CSV):
    """CSV as Excel, Google Contacts and Outlook save it, in any encoding.

    Binary to the admin's temporary storage, so the upload reaches
    `create_dataset` as bytes and the encoding is detected, not assumed.
    """

    def is_binary(self):
        return True

    def get_read_mode(self):
        return "rb"

    def create_dataset(self, in_stream):
        return sheet_read(
            data=in_stream, columns=ClientResource.columns(), required="email"
        )
