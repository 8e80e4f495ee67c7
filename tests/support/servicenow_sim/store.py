# -*- coding: utf-8 -*-
"""The simulator's records, schema and encoded-query engine.

Records are dicts of strings (ServiceNow's Table API answers every value as a
string), keyed by 32-hex ``sys_id``, kept per table; a query on a table sees
its child tables' records too. The engine follows platform-user-interface
/c_EncodedQueryStrings.md and api-reference/rest-apis/c_TableAPI.md: ``^`` AND,
``^OR``, ``^NQ``, ``ORDERBY``/``ORDERBYDESC``, the operators listed there,
dot-walking through references, case-sensitive names and values, and a
condition on a field the table does not have is **silently dropped**.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import re
import threading
import uuid

from . import fixtures

_CONDITION = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(.*)$", re.S)
_OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "NOT IN", "NOT LIKE", "STARTSWITH", "ENDSWITH", "LIKE", "IN", "!=", ">=",
              "<=", "=", ">", "<")


def new_sys_id():
    return uuid.uuid4().hex


def now_text():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class Schema(object):
    def __init__(self, tables=None):
        self.tables = dict(tables or fixtures.TABLES)
        self.children = {}
        for name, (parent, _fields) in self.tables.items():
            if parent:
                self.children.setdefault(parent, []).append(name)

    def exists(self, table):
        return table in self.tables

    def chain(self, table):
        chain = []
        while table:
            chain.append(table)
            table = self.tables[table][0]
        return chain

    def fields(self, table):
        """``{field: type}`` of ``table`` and its ancestors, plus the system fields."""
        merged = {"sys_id": "string", "sys_created_on": "glide_date_time", "sys_updated_on": "glide_date_time",
                  "sys_created_by": "string", "sys_updated_by": "string", "sys_mod_count": "integer",
                  "sys_class_name": "string"}
        for name in reversed(self.chain(table)):
            merged.update(self.tables[name][1])
        return merged

    def descendants(self, table):
        found = [table]
        for child in self.children.get(table, ()):
            found.extend(self.descendants(child))
        return found

    def is_a(self, table, ancestor):
        return ancestor in self.chain(table)

    def reference(self, table, field):
        kind = self.fields(table).get(field, "")
        return kind[4:] if kind.startswith("ref:") else None

    def root(self, table):
        return self.chain(table)[-1]

    def meta_rows(self):
        """sys_db_object and sys_dictionary rows describing the schema (generated, never stored)."""
        objects, dictionary = {}, {}
        ids = dict((name, uuid.uuid5(uuid.NAMESPACE_URL, "table/" + name).hex) for name in self.tables)
        for name, (parent, fields) in self.tables.items():
            objects[ids[name]] = {"sys_id": ids[name], "name": name, "label": name,
                                  "super_class": ids[parent] if parent else "", "sys_class_name": "sys_db_object"}
            for field, kind in fields.items():
                sys_id = uuid.uuid5(uuid.NAMESPACE_URL, "field/%s/%s" % (name, field)).hex
                dictionary[sys_id] = {"sys_id": sys_id, "name": name, "element": field,
                                      "internal_type": "reference" if kind.startswith("ref:") else kind,
                                      "reference": kind[4:] if kind.startswith("ref:") else "",
                                      "sys_class_name": "sys_dictionary"}
        return objects, dictionary


class Store(object):
    """All records, under one lock; optionally saved to a JSON file after every change."""

    def __init__(self, state_path=None):
        self.lock = threading.RLock()
        self.schema = Schema()
        generated = ("sys_db_object", "sys_dictionary")
        self.records = dict((table, {}) for table in self.schema.tables if table not in generated)
        self.counters = {}
        self.attachments = {}
        self.state_path = state_path
        meta_objects, meta_dictionary = self.schema.meta_rows()
        self.meta = {"sys_db_object": meta_objects, "sys_dictionary": meta_dictionary}
        if state_path and os.path.exists(state_path):
            self.load()
        else:
            self.seed()

    # -- persistence ------------------------------------------------------------------------------
    def seed(self):
        for rel in fixtures.RELATION_TYPES:
            parent, child = rel.split("::")
            self.insert("cmdb_rel_type", {"name": rel, "parent_descriptor": parent, "child_descriptor": child},
                        by="system", save=False)
        for (table, element), values in fixtures.CHOICES.items():
            for value, label in values.items():
                self.insert("sys_choice", {"name": table, "element": element, "value": value, "label": label,
                                           "inactive": "false"}, by="system", save=False)
        for template in fixtures.STANDARD_TEMPLATES:
            self.insert("std_change_record_producer", dict(template), by="system", save=False)
            self.insert("std_change_producer_version", {
                "name": "%s - 1" % template["name"], "version": "1", "std_change_producer": template["sys_id"],
                "sys_id": template["sys_id"][::-1]}, by="system", save=False)
        for group in fixtures.GROUPS:
            self.insert("sys_user_group", dict(group), by="system", save=False)
        for user, info in fixtures.USERS.items():
            self.insert("sys_user", {"user_name": user, "name": info.get("name", user), "active": "true"},
                        by="system", save=False)

    def save(self):
        if not self.state_path:
            return
        state = {"records": self.records, "counters": self.counters, "attachments": self.attachments}
        temporary = "%s.tmp-%d" % (self.state_path, os.getpid())
        with open(temporary, "w") as handle:
            json.dump(state, handle)
        os.replace(temporary, self.state_path)

    def load(self):
        with open(self.state_path) as handle:
            state = json.load(handle)
        for table, records in state["records"].items():
            self.records[table] = records
        self.counters = state.get("counters", {})
        self.attachments = state.get("attachments", {})

    # -- records ----------------------------------------------------------------------------------
    def table_of(self, sys_id, tables=None):
        for table in tables or self.records:
            if sys_id in self.records.get(table, {}):
                return table
        return None

    def rows(self, table):
        """Every record of ``table`` and its descendants."""
        if table in self.meta:
            return list(self.meta[table].values())
        rows = []
        for name in self.schema.descendants(table):
            rows.extend(self.records.get(name, {}).values())
        return rows

    def get(self, table, sys_id):
        if table in self.meta:
            return self.meta[table].get(sys_id)
        for name in self.schema.descendants(table):
            record = self.records.get(name, {}).get(sys_id)
            if record is not None:
                return record
        return None

    def _number(self, table):
        for name in self.schema.chain(table):
            if name in fixtures.NUMBERS:
                prefix, first = fixtures.NUMBERS[name]
                value = self.counters.get(name, first - 1) + 1
                self.counters[name] = value
                return "%s%07d" % (prefix, value)
        return None

    def insert(self, table, values, by="system", save=True):
        """Insert (unknown fields dropped, every value a string); returns (record, ignored field names)."""
        with self.lock:
            known = self.schema.fields(table)
            record = dict((field, "") for field, kind in known.items() if kind != "journal")
            ignored = []
            for field, value in values.items():
                if field not in known:
                    if field != "sys_id":
                        ignored.append(field)
                    continue
                if known[field] == "journal":
                    continue
                record[field] = _stringify(value)
            record["sys_id"] = values.get("sys_id") if _is_sys_id(values.get("sys_id")) else new_sys_id()
            stamp = now_text()
            record.update(sys_created_on=stamp, sys_updated_on=stamp, sys_created_by=by, sys_updated_by=by,
                          sys_mod_count="0", sys_class_name=table)
            number = self._number(table)
            if number and not record.get("number"):
                record["number"] = number
            if "active" in known and not values.get("active"):
                record["active"] = "true"
            self.records.setdefault(table, {})[record["sys_id"]] = record
            for field in ("work_notes", "comments"):
                if values.get(field) and known.get(field) == "journal":
                    self.journal(table, record["sys_id"], field, values[field], by)
            if save:
                self.save()
            return record, ignored

    def update(self, table, sys_id, values, by="system", save=True):
        """Apply ``values`` (unknown fields dropped; journal fields become journal entries)."""
        with self.lock:
            record = self.get(table, sys_id)
            if record is None:
                return None, []
            known = self.schema.fields(record["sys_class_name"])
            ignored = []
            changed = False
            for field, value in values.items():
                if field not in known or field in ("sys_id", "sys_class_name", "number"):
                    if field not in known:
                        ignored.append(field)
                    continue
                if known[field] == "journal":
                    if str(value):
                        self.journal(record["sys_class_name"], sys_id, field, value, by)
                        changed = True
                    continue
                text = _stringify(value)
                if record.get(field) != text:
                    record[field] = text
                    changed = True
            if changed:
                record["sys_updated_on"] = now_text()
                record["sys_updated_by"] = by
                record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            if save:
                self.save()
            return record, ignored

    def move(self, sys_id, new_table):
        """Reclassify a CI (IRE class switch): same sys_id, fields of the new class."""
        with self.lock:
            old_table = self.table_of(sys_id)
            record = self.records[old_table].pop(sys_id)
            known = self.schema.fields(new_table)
            moved = dict((field, record.get(field, "")) for field, kind in known.items() if kind != "journal")
            moved["sys_class_name"] = new_table
            self.records.setdefault(new_table, {})[sys_id] = moved
            return moved

    def delete(self, table, sys_id, save=True):
        with self.lock:
            for name in self.schema.descendants(table):
                if sys_id in self.records.get(name, {}):
                    del self.records[name][sys_id]
                    if save:
                        self.save()
                    return True
            return False

    def journal(self, table, sys_id, element, value, by):
        self.insert("sys_journal_field", {"element_id": sys_id, "element": element, "name": table,
                                          "value": str(value)}, by=by, save=False)

    # -- reading values ---------------------------------------------------------------------------
    def display(self, table, record):
        for name in self.schema.chain(record.get("sys_class_name") or table):
            if name in fixtures.DISPLAY_FIELDS:
                return record.get(fixtures.DISPLAY_FIELDS[name], "")
        return record.get("name") or record.get("number") or record.get("sys_id")

    def resolve(self, table, record, path):
        """The value of a dot-walked ``path`` (``support_group.name``) from ``record``, or None when a step
        is not a field (the caller drops such conditions)."""
        steps = path.split(".")
        current_table = record.get("sys_class_name") or table
        current = record
        for position, step in enumerate(steps):
            fields = self.schema.fields(current_table)
            if step not in fields:
                return None
            value = current.get(step, "") if current is not None else ""
            if position == len(steps) - 1:
                return value
            target = self.schema.reference(current_table, step)
            if not target:
                return None
            current = self.get(target, value) if value else None
            current_table = current.get("sys_class_name") if current else target
        return None

    def valid_path(self, table, path):
        steps = path.split(".")
        current = table
        for position, step in enumerate(steps):
            if step not in self.schema.fields(current):
                return False
            if position < len(steps) - 1:
                current = self.schema.reference(current, step)
                if not current:
                    return False
        return True

    # -- encoded queries ----------------------------------------------------------------------------
    def parse_query(self, table, text):
        """``(queries, order)``: queries is an OR (``^NQ``) of ANDs of OR-groups of conditions; invalid ones dropped."""
        order = []
        queries = []
        if not text:
            return [[]], order
        for part in _split_nq(text):
            groups = []
            for token in _split_conditions(part):
                if token.startswith("ORDERBYDESC"):
                    if self.valid_path(table, token[11:]):
                        order.append((token[11:], True))
                    continue
                if token.startswith("ORDERBY"):
                    if self.valid_path(table, token[7:]):
                        order.append((token[7:], False))
                    continue
                joined_or = token.startswith("OR") and groups
                if token.startswith("OR"):
                    token = token[2:]
                condition = self._parse_condition(table, token)
                if condition is None:
                    continue  # invalid part: silently ignored (c_TableAPI.md)
                if joined_or:
                    groups[-1].append(condition)
                else:
                    groups.append([condition])
            queries.append(groups)
        return queries, order

    def _parse_condition(self, table, token):
        match = _CONDITION.match(token)
        if not match:
            return None
        field, rest = match.group(1), match.group(2)
        for operator in _OPERATORS:
            if rest.startswith(operator):
                value = rest[len(operator):]
                break
        else:
            return None
        if not self.valid_path(table, field):
            return None
        return field, operator, value.replace("\0", "^")

    def matches(self, table, record, queries):
        return any(all(any(self._holds(table, record, condition) for condition in group) for group in groups)
                   for groups in queries)

    def _holds(self, table, record, condition):
        field, operator, value = condition
        actual = self.resolve(table, record, field)
        actual = "" if actual is None else actual
        if operator == "=":
            return actual == value
        if operator == "!=":
            return actual != value
        if operator == "LIKE":
            return value in actual
        if operator == "NOT LIKE":
            return value not in actual
        if operator == "STARTSWITH":
            return actual.startswith(value)
        if operator == "ENDSWITH":
            return actual.endswith(value)
        if operator == "IN":
            return actual in value.split(",")
        if operator == "NOT IN":
            return actual not in value.split(",")
        if operator == "ISEMPTY":
            return actual == ""
        if operator == "ISNOTEMPTY":
            return actual != ""
        try:
            left, right = float(actual), float(value)
        except ValueError:
            left, right = actual, value
        return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[operator]

    def query(self, table, text):
        queries, order = self.parse_query(table, text)
        rows = [row for row in self.rows(table) if self.matches(table, row, queries)]
        rows.sort(key=lambda row: row.get("sys_created_on", "") + row["sys_id"])
        for field, descending in reversed(order):
            rows.sort(key=lambda row, f=field: _sort_key(self.resolve(table, row, f)), reverse=descending)
        return rows

    # -- attachments ------------------------------------------------------------------------------------
    def store_attachment(self, sys_id, content):
        self.attachments[sys_id] = base64.b64encode(content).decode("ascii")

    def attachment_content(self, sys_id):
        data = self.attachments.get(sys_id)
        return None if data is None else base64.b64decode(data)

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.records)


def _split_nq(text):
    return text.replace("^^", "\0").split("^NQ")


def _split_conditions(text):
    return [token for token in text.split("^") if token]


def _sort_key(value):
    value = value or ""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _stringify(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def _is_sys_id(value):
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
