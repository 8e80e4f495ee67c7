# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Witnesses: places outside the database that keep the chain's checkpoints.

The one entry point is :func:`feed_witnesses`: every configured witness receives, in ledger order,
the ``ledger.checkpoint`` entries appended since its cursor (``SystemOfRecord.witness_cursor``,
one per witness and controller), and its cursor moves past what it took. A witness that fails keeps
its cursor and gets the same checkpoints again next time (so delivery is at least once; readers
drop duplicates), and its failure is a warning: a witness never blocks or fails a playbook.
:func:`read_witnessed` gives ``ledger_verify`` back what the witnesses hold.

A witness is a class with ``kind``, ``name`` (stable: the cursor is keyed on it), ``deliver(record)``
(raise :class:`WitnessError` to be retried later) and optionally ``read()`` (yields the records it
holds). A type is registered with :func:`register_witness_type` as ``factory(settings) -> witness or
None`` (None: not configured); the built-in ones (``file``, ``syslog``, ``command``, ``servicenow``) are
imported below, and a new one is one more module here and one more import line.
"""

from __future__ import annotations

import socket

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import KIND_CHECKPOINT

_TYPES = []

#: most checkpoints one feed hands a witness (a witness far behind catches up over several runs)
MAX_BATCH = 500


class WitnessError(Exception):
    """The witness could not take the checkpoint now; it is offered again next time."""


class Witness(object):
    kind = "abstract"

    def __init__(self, settings):
        self.settings = settings

    @property
    def name(self):
        raise NotImplementedError

    def deliver(self, record):
        raise NotImplementedError

    def read(self):
        return iter(())


def register_witness_type(factory):
    """Register ``factory(settings)`` (a Witness subclass works); returns it, so it serves as a decorator."""
    if factory not in _TYPES:
        _TYPES.append(factory)
    return factory


def configured_witnesses(settings):
    witnesses = []
    for factory in _TYPES:
        witness = factory(settings)
        if witness is not None:
            witnesses.append(witness)
    return witnesses


def cursor_name(witness):
    # a witness on one controller is not the same witness on another (its local file, its journal)
    return "%s@%s" % (witness.name, socket.gethostname())


def pending_checkpoints(sor, witness):
    """The ``ledger.checkpoint`` entries ``witness`` has not taken yet, oldest first."""
    cursor = sor.witness_cursor(cursor_name(witness))
    if cursor is None:
        # a witness new to this ledger starts from the newest checkpoint, not from years of them
        latest = sor.latest_entry([KIND_CHECKPOINT])
        return [latest] if latest is not None else []
    return list(sor.iter_entries(after_seq=cursor, kinds=[KIND_CHECKPOINT], limit=MAX_BATCH))


def feed_witnesses(sor, settings, warn=None, witnesses=None):
    """Hand every configured witness the checkpoints it has not taken yet. Returns one dict per witness
    (``witness``, ``delivered``, ``error``); never raises for a witness's failure."""
    from ansible_collections.changeops.itsm.plugins.module_utils.checkpoints import witness_record

    outcome = []
    for witness in witnesses if witnesses is not None else configured_witnesses(settings):
        name = cursor_name(witness)
        report = {"witness": witness.name, "delivered": 0, "error": None}
        outcome.append(report)
        try:
            pending = pending_checkpoints(sor, witness)
            last = None
            try:
                for entry in pending:
                    witness.deliver(witness_record(entry))
                    last = entry.seq
                    report["delivered"] += 1
            finally:
                if last is not None:
                    sor.advance_witness_cursor(name, last)
        except Exception as exc:  # pylint: disable=broad-except
            report["error"] = "%s" % exc
            if warn is not None:
                warn("witness %s did not take the ledger's checkpoint (it is offered again next time): %s"
                     % (witness.name, exc))
    return outcome


def read_witnessed(settings, witnesses=None):
    """``(records, problems)``: every checkpoint record the witnesses (and ``checkpoint_sources``) hold,
    each with ``witness`` set to where it was read."""
    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses.file import read_checkpoint_lines

    records, problems = [], []
    for witness in witnesses if witnesses is not None else configured_witnesses(settings):
        try:
            for record in witness.read():
                records.append(dict(record, witness=witness.name))
        except Exception as exc:  # pylint: disable=broad-except
            problems.append("cannot read witness %s: %s" % (witness.name, exc))
    for path in settings.get("checkpoint_sources") or ():
        try:
            for record in read_checkpoint_lines(path):
                records.append(dict(record, witness="file:%s" % path))
        except OSError as exc:
            problems.append("cannot read checkpoint source %s: %s" % (path, exc.strerror or exc))
    return records, problems


# the built-in witness types register themselves (explicit imports: Ansible bundles only what is imported)
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import file  # noqa: E402,F401 pylint: disable=wrong-import-position
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import syslog  # noqa: E402,F401 pylint: disable=wrong-import-position
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import command  # noqa: E402,F401 pylint: disable=wrong-import-position
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import servicenow  # noqa: E402,F401 pylint: disable=wrong-import-position
