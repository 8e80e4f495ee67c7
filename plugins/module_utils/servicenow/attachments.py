# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attachment API: a file on a record, once.

``POST /api/now/attachment/file?table_name&table_sys_id&file_name`` with the raw
bytes answers 201 and the attachment's metadata. There is no idempotency key,
so a file is looked up by record and name before it is sent, and read back
after: re-sending an entry after a crash between the upload and the cursor
update finds the file already there and sends nothing.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import ServiceNowConflict
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, value_of

META_FIELDS = ("file_name", "table_name", "table_sys_id", "size_bytes", "content_type")


class AttachmentAPI(object):
    def __init__(self, client):
        self.client = client

    def find(self, table, sys_id, file_name):
        query = Query().eq("table_name", table).eq("table_sys_id", sys_id).eq("file_name", file_name)
        response = self.client.request("GET", self.client.api("attachment"), params={
            "sysparm_query": query.encode(), "sysparm_limit": "5", "sysparm_fields": ",".join(("sys_id",) + META_FIELDS)},
            allow_404=True)
        rows = response.result if response.status == 200 and isinstance(response.result, list) else []
        return [row for row in rows if query.matches(row)]

    def attach_once(self, table, sys_id, file_name, content, content_type="application/json"):
        """Attach ``content`` (bytes) as ``file_name`` unless the record already has it; returns (sys_id, sent)."""
        existing = self.find(table, sys_id, file_name)
        if existing:
            return value_of(existing[0].get("sys_id")), False
        response = self.client.request(
            "POST", self.client.api("attachment", "file"),
            params={"table_name": table, "table_sys_id": sys_id, "file_name": file_name},
            data=content, headers={"Content-Type": content_type}, idempotent=False)
        created = response.result or {}
        attachment = value_of(created.get("sys_id"))
        stored = self.find(table, sys_id, file_name)
        if not attachment or not any(value_of(row.get("sys_id")) == attachment for row in stored):
            raise ServiceNowConflict(self.client.secrets.scrub(
                "%s: attachment %s on %s %s did not come back when read" % (
                    self.client.describe(), file_name, table, sys_id)), kind="item_error")
        if str(value_of(created.get("size_bytes")) or len(content)) != str(len(content)):
            raise ServiceNowConflict(self.client.secrets.scrub(
                "%s: attachment %s on %s %s holds %s bytes, %d were sent" % (
                    self.client.describe(), file_name, table, sys_id, value_of(created.get("size_bytes")),
                    len(content))), kind="item_error")
        return attachment, True

    def listed(self, table, sys_id, prefix, limit=None):
        """Metadata of the record's attachments whose name starts with ``prefix``, by name, newest name last; at
        most the ``limit`` last names (paged like the Table API)."""
        query = Query().eq("table_name", table).eq("table_sys_id", sys_id).where("file_name", "STARTSWITH", prefix)
        rows, offset, page = [], 0, 1000
        while True:
            response = self.client.request("GET", self.client.api("attachment"), params={
                "sysparm_query": query.encode(), "sysparm_limit": str(page), "sysparm_offset": str(offset),
                "sysparm_fields": ",".join(("sys_id",) + META_FIELDS)}, allow_404=True)
            found = response.result if response.status == 200 and isinstance(response.result, list) else []
            rows.extend(row for row in found if query.matches(row))
            if len(found) < page:
                break
            offset += page
        rows.sort(key=lambda row: value_of(row.get("file_name")) or "")
        return rows[-limit:] if limit else rows

    def content(self, attachment_sys_id):
        """The bytes of an attachment (``GET /api/now/attachment/{sys_id}/file``), or None when it is gone."""
        response = self.client.request("GET", self.client.api("attachment", attachment_sys_id, "file"),
                                       headers={"Accept": "*/*"}, allow_404=True)
        return None if response.status == 404 else response.content
