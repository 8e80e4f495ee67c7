# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What projectors write through: a DB-API cursor that takes ``?`` placeholders on any dialect."""

from __future__ import annotations


class Statements(object):
    """Wraps a cursor so projections can write ``?`` placeholders on any dialect (``%s`` for psycopg)."""

    def __init__(self, cursor, placeholder="?", bulk="executemany", tables=None):
        self._cursor = cursor
        self._placeholder = placeholder
        #: how :meth:`insert_rows` stores many rows: ``executemany`` or ``copy`` (PostgreSQL's COPY FROM STDIN)
        self._bulk = bulk
        #: the query tables that exist (None: all of them); a replay in an older migration has fewer
        self.tables = tables
        #: ``{run_id: doc text}`` of the change events this transaction wrote, while an append projects its batch
        #: (``projections._event_doc``); None: every read goes to the table
        self.event_docs = None
        #: run ids known to have no change event while an append projects its batch (``projections._event_doc``)
        self.absent_events = None

    @property
    def bulk(self):
        return self._bulk

    @bulk.setter
    def bulk(self, value):
        self._bulk = value

    def _sql(self, sql):
        if self._placeholder != "?":
            sql = sql.replace("%", "%%").replace("?", self._placeholder)
        return sql

    def execute(self, sql, params=()):
        self._cursor.execute(self._sql(sql), params)
        return self._cursor

    def executemany(self, sql, params_seq):
        """One statement for many parameter rows: SQLite loops in C, psycopg sends them in one pipeline."""
        self._cursor.executemany(self._sql(sql), params_seq)
        return self._cursor

    def select_in(self, sql, values, chunk=500):
        """Rows of ``sql`` (holding one ``IN ({marks})``) for every chunk of ``values``, well under the
        dialects' bound-parameter limits."""
        values = list(values)
        rows = []
        for start in range(0, len(values), chunk):
            part = values[start:start + chunk]
            rows.extend(self.execute(sql.format(marks=", ".join("?" * len(part))), tuple(part)).fetchall())
        return rows

    def insert_rows(self, table, columns, rows):
        """Insert ``rows`` (tuples in ``columns`` order) into ``table``: plain INSERTs with no conflict
        handling, so PostgreSQL takes them by COPY (one stream instead of a statement per row; a
        constraint a row breaks fails the whole COPY, and with it the transaction, like an INSERT would)."""
        if not rows:
            return
        if self._bulk == "copy":
            with self._cursor.copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(columns))) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        self.executemany("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ", ".join("?" * len(columns))),
                         rows)
