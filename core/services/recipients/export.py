"""Exporting recipients as CSV, streamed through the resource's fields.

The library's `Resource.export` builds the whole file as one tablib Dataset
in memory; this writes each chunk of the queryset out as it is read, so the
memory stays flat however many rows there are.
"""

import codecs
import csv
import io
from collections.abc import Iterator

from core.models import Client

from .columns import FORMULA_PREFIXES, AttributeColumn, TagsColumn, tag_names_sorted
from .resource import EXPORT_BATCH, ClientResource


def escape_formula(value: str) -> str:
    """Make a cell a spreadsheet would run as a formula plain text again.

    The library's IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT only strips a
    leading "=" (4.4); this quotes all of OWASP's prefixes, and the import
    takes the quote off again.
    """
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def clients_export_csv(
    *, queryset, with_owner: bool = False, owner=None
) -> Iterator[bytes]:
    """Yield the queryset's recipients as UTF-8 CSV with a BOM, in chunks.

    Excel shows Cyrillic correctly only with the BOM. `with_owner` adds the
    owner's e-mail, for those who see everyone's recipients; `owner` adds a
    column for each of that owner's custom fields. The tags come last but
    the owner.
    """
    resource = ClientResource(with_owner=with_owner, fields_of=owner)
    fields = resource.get_export_fields()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(resource.get_export_headers())
    yield codecs.BOM_UTF8 + _drain(buffer)
    if any(_dehydrated(resource, field) for field in fields):
        # A column computed from the whole recipient: instances it is.
        # iter_queryset reads the rows a page at a time.
        queryset = queryset.prefetch_related("tags")
        if with_owner:
            queryset = queryset.select_related("owner")
        rows = (
            [resource.export_field(field, recipient) for field in fields]
            for recipient in resource.iter_queryset(queryset)
        )
    else:
        rows = _plain_rows(queryset, fields)
    for count, row in enumerate(rows, start=1):
        writer.writerow([escape_formula(cell) for cell in row])
        if count % EXPORT_BATCH == 0:
            yield _drain(buffer)
    if chunk := _drain(buffer):
        yield chunk


def _plain_rows(queryset, fields):
    """Each column's own attribute and widget, read as plain values (what
    export_field does then): an instance a row, and the owner's whole user
    row, took 6-10 times as long for the same bytes. A chunk's tags come in
    one query."""
    plain = [
        field for field in fields if not isinstance(field, AttributeColumn | TagsColumn)
    ]
    values = queryset.values_list(
        "pk", "attributes", *(field.attribute for field in plain)
    )
    for chunk in _chunks(values.iterator(chunk_size=EXPORT_BATCH), EXPORT_BATCH):
        tags = _tags_of([row[0] for row in chunk])
        for pk, attributes, *row in chunk:
            read = dict(zip(map(id, plain), row, strict=True))
            cells = []
            for field in fields:
                if isinstance(field, AttributeColumn):
                    value = (attributes or {}).get(field.key)
                elif isinstance(field, TagsColumn):
                    value = tags.get(pk, [])
                else:
                    value = read[id(field)]
                cells.append(field.widget.render(value))
            yield cells


def _chunks(rows, size):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _tags_of(client_ids) -> dict[int, list[str]]:
    """Each recipient's tag names, for one chunk of rows, in one query."""
    links = (
        Client.tags.through.objects.filter(client_id__in=client_ids)
        .order_by()
        .values_list("client_id", "tag__name")
    )
    tags = {}
    for client_id, name in links:
        tags.setdefault(client_id, []).append(name)
    return {client_id: tag_names_sorted(names) for client_id, names in tags.items()}


def _dehydrated(resource, field) -> bool:
    """Whether the resource computes this column itself (a dehydrate_ method)."""
    method = field.get_dehydrate_method(resource.get_field_name(field))
    return callable(method) or getattr(resource, method, None) is not None


def _drain(buffer: io.StringIO) -> bytes:
    chunk = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return chunk
