# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Table API: queries that cannot silently widen, pages, records.

ServiceNow ignores a query condition whose field it does not know and returns
the rows matching the rest (``glide.invalid_query.returns_no_rows`` is off by
default), so ``nmae=web01`` returns every CI. Two nets:

* field names a person typed (inventory filters, mappings) are checked once per
  client against the table's dictionary (``sys_dictionary`` along the
  ``sys_db_object`` class chain) before the query is sent: :meth:`TableAPI.check_fields`;
* every row that comes back is checked against the conditions of the
  :class:`Query` that asked for it (the fields they test are always among
  ``sysparm_fields``), so a condition the instance dropped is caught whatever
  the cause: :meth:`Query.matches`.

Lists use ``/api/now/v2/table`` (an empty result is ``[]``; v1's 404 for it is
read the same way), ``sysparm_fields`` always, ``sysparm_limit``/``sysparm_offset``
pages that stop on ``X-Total-Count``, a missing ``Link: rel="next"`` or a short
page, and drop the empty or repeated rows large fetches have been seen to return
(servicenow.itsm #347, #521). A page cancelled by the 60 s transaction quota is
asked for again at half the size.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowRequestError,
    ServiceNowUnavailable,
)

OPERATORS = ("=", "!=", "LIKE", "STARTSWITH", "ENDSWITH", "IN", "NOT IN", "ISEMPTY", "ISNOTEMPTY")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
MIN_PAGE = 10
#: fields every table has (sys_metadata), not listed per table in a dictionary read
SYSTEM_FIELDS = frozenset(("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by",
                           "sys_mod_count", "sys_class_name", "sys_domain", "sys_tags"))


def value_of(field):
    """A field as the API returns it: a plain string, or ``{value, display_value|link}``."""
    if isinstance(field, dict):
        return field.get("value")
    return field


def display_of(field):
    if isinstance(field, dict):
        return field.get("display_value", field.get("value"))
    return field


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Query(object):
    """An encoded query built from conditions, each checked on the rows that come back.

    ``Query().eq("name", "web01").or_eq("name", "web02").where("sys_class_name", "IN", [...])``
    """

    def __init__(self):
        self._groups = []   # AND of OR-groups: [[(field, op, value), ...], ...]
        self._order = []
        self._raw = []      # a person's encoded query, fields checked against the schema by the caller

    # -- building -------------------------------------------------------------------------------
    def where(self, field, op, value=None, join="AND"):
        if not isinstance(field, str) or not _FIELD.match(field):
            raise ValidationError("not a ServiceNow field name: %r" % (field,), field=field)
        if op not in OPERATORS:
            raise ValidationError("unsupported encoded-query operator %r" % (op,))
        if op in ("IN", "NOT IN"):
            values = [_text(item) for item in (value or [])]
            if any("," in item for item in values):
                raise ValidationError("%s %s: a value containing a comma cannot be matched with IN: %r"
                                      % (field, op, value), field=field)
            value = values
        elif op not in ("ISEMPTY", "ISNOTEMPTY"):
            value = _text(value)
        if join == "OR" and self._groups:
            self._groups[-1].append((field, op, value))
        else:
            self._groups.append([(field, op, value)])
        return self

    def eq(self, field, value):
        return self.where(field, "=", value)

    def or_eq(self, field, value):
        return self.where(field, "=", value, join="OR")

    def isin(self, field, values):
        return self.where(field, "IN", list(values))

    def raw(self, text):
        """Append a person's encoded query as written. Its fields must have been checked with
        :meth:`TableAPI.check_fields` (rows cannot be checked against text this class did not build)."""
        if text:
            self._raw.append(text.strip().strip("^"))
        return self

    def order_by(self, field, descending=False):
        if not _FIELD.match(field or ""):
            raise ValidationError("not a ServiceNow field name: %r" % (field,), field=field)
        self._order.append((field, descending))
        return self

    # -- reading ------------------------------------------------------------------------------------
    def fields(self):
        """Every field the conditions and the order test (dot-walked ones whole)."""
        names = []
        for group in self._groups:
            for field, _op, _value in group:
                if field not in names:
                    names.append(field)
        for field, _descending in self._order:
            if field not in names:
                names.append(field)
        return names

    def encode(self):
        parts = []
        for group in self._groups:
            parts.append("^OR".join(_encode_condition(condition) for condition in group))
        parts.extend(self._raw)
        for field, descending in self._order:
            parts.append("%s%s" % ("ORDERBYDESC" if descending else "ORDERBY", field))
        return "^".join(parts)

    def __str__(self):
        return self.encode()

    def matches(self, row):
        """False when ``row`` (as returned, values plain or ``{value, ...}``) breaks a condition."""
        for group in self._groups:
            if not any(_condition_holds(row, condition) for condition in group):
                return False
        return True

    def broken_condition(self, row):
        for group in self._groups:
            if not any(_condition_holds(row, condition) for condition in group):
                return "^OR".join(_encode_condition(condition) for condition in group)
        return None


def _escape(value):
    # "^" separates conditions; ServiceNow reads "^^" as a literal caret
    return value.replace("^", "^^")


def _encode_condition(condition):
    field, op, value = condition
    if op in ("ISEMPTY", "ISNOTEMPTY"):
        return "%s%s" % (field, op)
    if op in ("IN", "NOT IN"):
        return "%s%s%s" % (field, op, _escape(",".join(value)))
    return "%s%s%s" % (field, op, _escape(value))


def _row_value(row, field):
    if field in row:
        return _text(value_of(row[field]))
    # a reference asked for whole comes back as {value, display_value}; its dot-walk is asked for by name
    return None


def _condition_holds(row, condition):
    field, op, value = condition
    actual = _row_value(row, field)
    if actual is None:
        # not returned: the caller always asks for the fields it tests, so this row cannot be trusted
        return False
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    if op == "LIKE":
        return value in actual
    if op == "STARTSWITH":
        return actual.startswith(value)
    if op == "ENDSWITH":
        return actual.endswith(value)
    if op == "IN":
        return actual in value
    if op == "NOT IN":
        return actual not in value
    if op == "ISEMPTY":
        return actual == ""
    if op == "ISNOTEMPTY":
        return actual != ""
    return False


def parse_encoded_query(text, origin="query"):
    """A person's encoded query (an inventory option) -> the field names it tests, to check against the schema.

    The query itself is sent as written; only its fields are extracted (operators longest first, so
    ``STARTSWITH`` is not read as a field ending in ``START``).
    """
    fields = []
    if not text:
        return fields
    operators = sorted(["=", "!=", "LIKE", "NOT LIKE", "STARTSWITH", "ENDSWITH", "IN", "NOT IN", "ISEMPTY",
                        "ISNOTEMPTY", "<", ">", "<=", ">=", "BETWEEN", "SAMEAS", "NSAMEAS", "ANYTHING", "EMPTYSTRING",
                        "DYNAMIC", "ON", "NOTON", "RELATIVEGT", "RELATIVELT", "DATEPART", "VALCHANGES", "CHANGESFROM",
                        "CHANGESTO", "INSTANCEOF"], key=len, reverse=True)
    for part in re.split(r"\^(?:NQ|OR(?!DERBY))?", text.replace("^^", "\0")):
        part = part.replace("\0", "^").strip()
        if not part or part.startswith(("ORDERBY", "GROUPBY")):
            if part.startswith(("ORDERBYDESC", "ORDERBY")):
                name = part[len("ORDERBYDESC"):] if part.startswith("ORDERBYDESC") else part[len("ORDERBY"):]
                if name and name not in fields:
                    fields.append(name)
            continue
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_.]*)", part)
        if not match:
            raise ValidationError("%s: cannot read a field name in %r" % (origin, part), field=origin, value=text)
        rest = part[match.end():]
        name = match.group(1)
        # the field name is what precedes the longest operator that follows it
        for operator in operators:
            if rest.startswith(operator):
                break
        else:
            # an operator glued to the name (fieldSTARTSWITHx): cut the name at the operator
            for operator in operators:
                position = name.find(operator)
                if position > 0 and operator.isalpha():
                    name = name[:position]
                    break
        if name not in fields:
            fields.append(name)
    return fields


class TableAPI(object):
    """Table API calls through one :class:`client.Client`."""

    def __init__(self, client):
        self.client = client
        self._schemas = {}
        self.page_size = int(client.settings.get("page_size") or 1000)

    def _path(self, table, sys_id=None):
        parts = ["v2", "table", table]
        if sys_id:
            parts.append(sys_id)
        return self.client.api(*parts)

    # -- schema ------------------------------------------------------------------------------------
    def schema(self, table):
        """``{field: reference table or ""}`` of ``table`` and its ancestors (two to three requests, once per client)."""
        if table in self._schemas:
            return self._schemas[table]
        chain = []
        name = table
        while name and name not in chain and len(chain) < 12:
            rows = self.list("sys_db_object", Query().eq("name", name), ["name", "super_class.name"], limit=1)
            if not rows:
                if name == table:
                    raise ServiceNowRequestError(self.client.secrets.scrub(
                        "%s: there is no table %r (sys_db_object)" % (self.client.describe(), table)),
                        kind="bad_request")
                break
            chain.append(name)
            name = value_of(rows[0].get("super_class.name"))
        fields = {}
        for row in self.list("sys_dictionary", Query().isin("name", chain), ["name", "element", "reference"]):
            element = value_of(row.get("element"))
            if element:
                fields[element] = value_of(row.get("reference")) or ""
        for field in SYSTEM_FIELDS:
            fields.setdefault(field, "")
        self._schemas[table] = fields
        return fields

    def check_fields(self, table, fields, origin):
        """Raise ``ValidationError`` naming ``origin`` and the nearest real field for any name ``table`` lacks
        (the first step of a dot-walk against ``table``, the next against the table it references)."""
        for field in fields:
            current, known = table, self.schema(table)
            steps = field.split(".")
            for position, step in enumerate(steps):
                if step not in known:
                    close = difflib.get_close_matches(step, list(known), n=1)
                    raise ValidationError(
                        "%s: %r is not a field of %s%s (ServiceNow would ignore that condition and return rows it "
                        "does not match)" % (origin, ".".join(steps[:position + 1]), current,
                                             "; did you mean %r?" % close[0] if close else ""),
                        field=origin, value=field)
                if position < len(steps) - 1:
                    reference = known[step]
                    if not reference:
                        raise ValidationError("%s: %r is not a reference field of %s, so %r cannot dot-walk through "
                                              "it" % (origin, step, current, field), field=origin, value=field)
                    current, known = reference, self.schema(reference)

    # -- reading -----------------------------------------------------------------------------------
    def list(self, table, query, fields, limit=None, display_value="false"):
        """Rows of ``table`` matching ``query`` (a :class:`Query`), each checked against it."""
        if not fields:
            raise ValidationError("a Table API read must name its fields (sysparm_fields)")
        wanted = list(dict.fromkeys(list(fields) + ["sys_id"] + query.fields()))
        rows = []
        seen = set()
        offset = 0
        page = self.page_size if limit is None else min(self.page_size, limit)
        total = None
        while True:
            params = {
                "sysparm_query": query.encode(),
                "sysparm_fields": ",".join(wanted),
                "sysparm_limit": str(page),
                "sysparm_offset": str(offset),
                "sysparm_display_value": display_value,
                "sysparm_exclude_reference_link": "true",
            }
            try:
                response = self.client.request("GET", self._path(table), params=params, allow_404=True)
            except ServiceNowUnavailable as exc:
                if exc.kind == "transaction_cancelled" and page > MIN_PAGE:
                    page = max(MIN_PAGE, page // 2)
                    continue
                raise
            batch = response.result if response.status != 404 else []
            if not isinstance(batch, list):
                batch = [batch] if isinstance(batch, dict) else []
            for row in batch:
                sys_id = value_of(row.get("sys_id")) if isinstance(row, dict) else None
                if not sys_id or sys_id in seen:
                    continue
                broken = query.broken_condition(row)
                if broken is not None:
                    raise ServiceNowRequestError(self.client.secrets.scrub(
                        "%s: a read of %s for %r returned %s, which does not match %r: the instance ignored part of "
                        "the query (a field it does not know?), so none of the answer is used"
                        % (self.client.describe(), table, query.encode(), sys_id, broken)), kind="bad_request")
                seen.add(sys_id)
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    return rows
            offset += len(batch)
            if total is None and response.headers.get("X-Total-Count"):
                try:
                    total = int(response.headers["X-Total-Count"])
                except ValueError:
                    total = None
            link = response.headers.get("Link")
            if len(batch) < page or (total is not None and offset >= total) or (link is not None and
                                                                                'rel="next"' not in link):
                return rows

    def get(self, table, sys_id, fields):
        if not fields:
            raise ValidationError("a Table API read must name its fields (sysparm_fields)")
        response = self.client.request("GET", self._path(table, sys_id), params={
            "sysparm_fields": ",".join(dict.fromkeys(list(fields) + ["sys_id"])),
            "sysparm_exclude_reference_link": "true"}, allow_404=True)
        if response.status == 404:
            return None
        return response.result

    # -- writing -----------------------------------------------------------------------------------
    def create(self, table, values, fields=("sys_id",)):
        response = self.client.request("POST", self._path(table), json_body=values, idempotent=False,
                                       params={"sysparm_fields": ",".join(dict.fromkeys(list(fields) + ["sys_id"])),
                                               "sysparm_exclude_reference_link": "true"})
        return response.result

    def update(self, table, sys_id, values, fields=("sys_id",)):
        response = self.client.request("PATCH", self._path(table, sys_id), json_body=values,
                                       params={"sysparm_fields": ",".join(dict.fromkeys(list(fields) + ["sys_id"])),
                                               "sysparm_exclude_reference_link": "true"})
        return response.result

    def delete(self, table, sys_id):
        self.client.request("DELETE", self._path(table, sys_id), allow_404=True)
