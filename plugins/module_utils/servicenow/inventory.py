# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts read from ServiceNow's CMDB, for the ``changeops.itsm.cmdb`` inventory plugin (``source: servicenow``).

Each CI becomes a record shaped like one of the changeops CMDB (our attribute names,
mapped back from ServiceNow's fields with the same ``field_map`` the outbox pushes
with), so the plugin builds host variables and groups the same way whichever CMDB
it reads. ``support_group`` is the group's name (dot-walked, one query), the class
is ServiceNow's (``cmdb_ci_linux_server``), the status is read back from
``operational_status``. Filters become an encoded query whose every condition is
checked on every row returned; a person's own ``servicenow_query`` is checked
against the table's dictionary first, so a misspelt field is an error, not a
silently wider inventory.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.ire import DEFAULT_FIELD_MAP, STATUS_MAP
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import (
    Query,
    TableAPI,
    parse_encoded_query,
    value_of,
)

#: operational_status -> our status
STATUS_BY_OPERATIONAL = dict((values[1], status) for status, values in STATUS_MAP.items())
EXTRA_FIELDS = ("sys_class_name", "install_status", "operational_status", "support_group", "support_group.name",
                "sys_updated_on")


def fetch_hosts(settings, table="cmdb_ci_server", statuses=None, environments=None, classes=None, query=None,
                origin="inventory"):
    """``[{"attributes": {...}, "ci_id": None, "updated_at": ..., "servicenow_sys_id": ...}]`` of the CIs."""
    client = Client(settings)
    try:
        api = TableAPI(client)
        field_map = dict(DEFAULT_FIELD_MAP)
        field_map.update(settings.get("field_map") or {})
        reverse = dict((field, attribute) for attribute, field in field_map.items() if field)
        wanted = Query()
        if statuses:
            unknown = [status for status in statuses if status not in STATUS_MAP]
            if unknown:
                raise ValidationError("%s: statuses %s: not a CI status (%s)"
                                      % (origin, ", ".join(unknown), ", ".join(sorted(STATUS_MAP))),
                                      field="statuses", value=unknown)
            wanted.isin("operational_status", sorted(set(STATUS_MAP[status][1] for status in statuses)))
        if environments:
            wanted.isin("environment", environments)
        if classes:
            wanted.isin("sys_class_name", classes)
        if query:
            api.check_fields(table, parse_encoded_query(query, "%s servicenow_query" % origin),
                             "%s servicenow_query" % origin)
            wanted.raw(query)
        wanted.order_by("name")
        schema = api.schema(table)
        fields = [field for field in list(reverse) + list(EXTRA_FIELDS) if field.split(".")[0] in schema]
        records = []
        for row in api.list(table, wanted, fields):
            attributes = {}
            for field, attribute in reverse.items():
                value = value_of(row.get(field))
                if value not in (None, ""):
                    attributes[attribute] = value
            sys_id = value_of(row["sys_id"])
            attributes["servicenow_sys_id"] = sys_id
            attributes["servicenow_class"] = value_of(row.get("sys_class_name"))
            attributes["class"] = attributes["servicenow_class"]
            status = STATUS_BY_OPERATIONAL.get(str(value_of(row.get("operational_status")) or ""))
            if status:
                attributes["status"] = status
            group = value_of(row.get("support_group.name"))
            if group:
                attributes["support_group"] = group
            records.append({"attributes": attributes, "ci_id": None, "last_change_run_id": None,
                            "updated_at": value_of(row.get("sys_updated_on"))})
        return records
    finally:
        client.close()
