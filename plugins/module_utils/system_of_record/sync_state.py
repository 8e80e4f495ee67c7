# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The outbox bookkeeping of external sync targets (``sync_targets``, ``sync_items``), for the SQL backends.

The ledger is the outbox: a target (ServiceNow) is fed the entries after its
cursor, in ledger order. Here, per target, is the cursor (moved with a compare
and set, so two drains can never both deliver an entry), the last error and the
time before which it should not be tried again (a 429's ``Retry-After``), a lease
so that one process drains at a time (it expires, so a killed drain does not
block the next), and the entries the target refused, set aside until retried or
skipped. None of this is a ledger entry: like the counters, it is bookkeeping
about deliveries of the record, not part of it.
"""

from __future__ import annotations

import json
import time

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.statements import Statements

_TARGET_COLUMNS = ("target, cursor_seq, delivered, updated_at, last_success_at, last_error, last_error_at, "
                   "retry_after, lease_owner, lease_expires_ms")
_ITEM_COLUMNS = "target, seq, entry_id, kind, subject, status, error, details, attempts, recorded_at"
ITEM_STATUSES = ("failed", "retry", "skipped", "delivered")


def _target(row):
    keys = [key.strip() for key in _TARGET_COLUMNS.split(",")]
    return dict(zip(keys, row))


def _item(row):
    keys = [key.strip() for key in _ITEM_COLUMNS.split(",")]
    item = dict(zip(keys, row))
    item["details"] = json.loads(item["details"]) if item.get("details") else {}
    return item


class SqlSyncState(object):
    """Mixed into ``SqlSystemOfRecord``: the sync-target methods of ``SystemOfRecord``."""

    def _ensure_target(self, db, target):
        row = db.execute("SELECT %s FROM sync_targets WHERE target = ?" % _TARGET_COLUMNS, (target,)).fetchone()
        if row is None:
            db.execute("INSERT INTO sync_targets (target, cursor_seq, delivered) VALUES (?, 0, 0)", (target,))
            row = db.execute("SELECT %s FROM sync_targets WHERE target = ?" % _TARGET_COLUMNS, (target,)).fetchone()
        return _target(row)

    def get_sync_state(self, target):
        rows = self._query("SELECT %s FROM sync_targets WHERE target = ?" % _TARGET_COLUMNS, (target,))
        return _target(rows[0]) if rows else None

    def list_sync_states(self):
        return [_target(row) for row in self._query("SELECT %s FROM sync_targets ORDER BY target" % _TARGET_COLUMNS)]

    def advance_sync_cursor(self, target, from_seq, to_seq, delivered=0):
        with self._write_transaction() as cursor:
            db = Statements(cursor, self.placeholder)
            state = self._ensure_target(db, target)
            if state["cursor_seq"] != from_seq:
                raise ConflictError("the %s cursor is at %s, not %s: another drain moved it" % (
                    target, state["cursor_seq"], from_seq), target=target)
            now = utc_now()
            db.execute("UPDATE sync_targets SET cursor_seq = ?, delivered = delivered + ?, updated_at = ?,"
                       " last_success_at = ?, last_error = NULL, last_error_at = NULL, retry_after = NULL"
                       " WHERE target = ?", (int(to_seq), int(delivered), now, now, target))

    def note_sync_error(self, target, message, retry_after=None):
        with self._write_transaction() as cursor:
            db = Statements(cursor, self.placeholder)
            self._ensure_target(db, target)
            now = utc_now()
            db.execute("UPDATE sync_targets SET last_error = ?, last_error_at = ?, retry_after = ?, updated_at = ?"
                       " WHERE target = ?", (message, now, retry_after, now, target))

    def acquire_sync_lease(self, target, owner, seconds):
        """Take the target's drain lease for ``seconds`` unless another owner holds an unexpired one."""
        now_ms = int(time.time() * 1000)
        with self._write_transaction() as cursor:
            db = Statements(cursor, self.placeholder)
            state = self._ensure_target(db, target)
            if state["lease_owner"] not in (None, owner) and (state["lease_expires_ms"] or 0) > now_ms:
                return False
            db.execute("UPDATE sync_targets SET lease_owner = ?, lease_expires_ms = ? WHERE target = ?",
                       (owner, now_ms + int(seconds * 1000), target))
            return True

    def release_sync_lease(self, target, owner):
        with self._write_transaction() as cursor:
            db = Statements(cursor, self.placeholder)
            db.execute("UPDATE sync_targets SET lease_owner = NULL, lease_expires_ms = NULL"
                       " WHERE target = ? AND lease_owner = ?", (target, owner))

    def set_sync_item(self, target, seq, entry_id, kind, subject, status, error=None, details=None):
        """Record what became of one entry the target could not take (insert or update by ``(target, seq)``)."""
        if status not in ITEM_STATUSES:
            raise ValueError("sync item status %r" % status)
        with self._write_transaction() as cursor:
            db = Statements(cursor, self.placeholder)
            now = utc_now()
            text = json.dumps(details or {}, sort_keys=True)
            row = db.execute("SELECT attempts FROM sync_items WHERE target = ? AND seq = ?", (target, seq)).fetchone()
            if row is None:
                db.execute("INSERT INTO sync_items (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)" % _ITEM_COLUMNS,
                           (target, int(seq), entry_id, kind, subject, status, error, text, now))
            else:
                db.execute("UPDATE sync_items SET status = ?, error = COALESCE(?, error), details = ?,"
                           " attempts = attempts + ?, recorded_at = ? WHERE target = ? AND seq = ?",
                           (status, error, text, 1 if status == "failed" else 0, now, target, int(seq)))

    def find_sync_items(self, target, statuses=None, limit=None):
        sql = "SELECT %s FROM sync_items WHERE target = ?" % _ITEM_COLUMNS
        params = [target]
        if statuses:
            sql += " AND status IN (%s)" % ", ".join("?" * len(statuses))
            params.extend(statuses)
        sql += " ORDER BY seq"
        if limit:
            sql += " LIMIT %d" % int(limit)
        return [_item(row) for row in self._query(sql, tuple(params))]
