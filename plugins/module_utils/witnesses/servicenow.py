# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ServiceNow as a witness of the chain's head (``[changeops_servicenow] witness = true``, or
E(CHANGEOPS_SERVICENOW_WITNESS)).

Each checkpoint becomes one JSON attachment, ``changeops-checkpoint-<seq>-<head>.json``, on a record that
stands for the ledger in ServiceNow's CMDB: an application CI (``cmdb_ci_appl``) named
``changeops ledger <first 12 digits of its first entry's hash>``, with ``correlation_id``
``changeops-ledger-<that hash>``, which the witness creates the first time. Why there:

* ServiceNow is administered by other people than the ledger's database: a rewrite of the ledger has to
  reach the instance as well, and the checkpoint sits next to the CIs and changes it vouches for;
* an attachment cannot be changed through the API once written (only deleted; ServiceNow audits
  deletions, and an administrator can deny the integration user delete on ``sys_attachment``), and a
  record of our own keeps the checkpoints out of the way of every other record;
* no custom table is needed (one would need a licence on many instances).

Delivery goes through the same client as the outbox (``servicenow/client.py``: retries, 429s, the request
budget) within ``sync_timeout``; it is idempotent (the attachment is looked up by name before it is
sent), so the at-least-once delivery of the witnesses package never stores a checkpoint twice. A failure is
a :class:`WitnessError`: the checkpoint is offered again next time, and the playbook goes on. ``read()``
gives ``ledger_verify`` the newest :data:`READ_LIMIT` checkpoints of every ledger CI of this witness's
instance (one request for the list, one per checkpoint).

Off by default: ServiceNow counts requests per user and hour (rate limits), and this costs about four per
recorded run. The outbox carries the head's hash in every delivery in any case (docs/servicenow.md).
"""

from __future__ import annotations

import json
import time

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import (
    Witness,
    WitnessError,
    register_witness_type,
)

LEDGER_CLASS = "cmdb_ci_appl"
CORRELATION_PREFIX = "changeops-ledger-"
FILE_PREFIX = "changeops-checkpoint-"
#: the newest checkpoints read back per ledger CI (a witness keeps years of them; the newest matter most)
READ_LIMIT = 200
#: seconds one delivery or reading may take at most (``sync_timeout`` when it is shorter)
MAX_SECONDS = 30.0


@register_witness_type
def _configured(settings):
    from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
        ansible_config_file,
        controller_settings,
    )

    try:
        servicenow = controller_settings(None, ansible_config_file())
    except ChangeopsError as exc:
        # a broken configuration is said when a checkpoint is delivered, as a witness failure: never silently
        return _Misconfigured(settings, exc.message)
    if not (servicenow.get("witness") and servicenow.base_url):
        return None
    return ServiceNowWitness(settings, servicenow)


class _Misconfigured(Witness):
    kind = "servicenow"

    def __init__(self, settings, problem):
        super(_Misconfigured, self).__init__(settings)
        self.problem = problem

    @property
    def name(self):
        return "servicenow"

    def deliver(self, record):
        raise WitnessError("the ServiceNow settings are invalid: %s" % self.problem)

    def read(self):
        raise WitnessError("the ServiceNow settings are invalid: %s" % self.problem)


class ServiceNowWitness(Witness):
    kind = "servicenow"

    def __init__(self, settings, servicenow, client_factory=None):
        super(ServiceNowWitness, self).__init__(settings)
        self.servicenow = servicenow
        self._client_factory = client_factory
        self._ledger_cis = {}

    @property
    def name(self):
        return self.servicenow.target_key()

    def _client(self):
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client

        self.servicenow.check_complete("[changeops_servicenow] of ansible.cfg / SN_* variables (witness)")
        seconds = min(MAX_SECONDS, float(self.servicenow.get("sync_timeout") or MAX_SECONDS)) or MAX_SECONDS
        factory = self._client_factory or Client
        return factory(self.servicenow, deadline=time.monotonic() + seconds)

    def _apis(self, client):
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.attachments import AttachmentAPI
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import TableAPI

        return TableAPI(client), AttachmentAPI(client)

    def _ledger_ci(self, table, record, create):
        """The sys_id of the CI standing for the ledger whose first entry has hash ``record["ledger"]``."""
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, value_of

        ledger = record.get("ledger") or ""
        if ledger in self._ledger_cis:
            return self._ledger_cis[ledger]
        correlation = CORRELATION_PREFIX + ledger
        rows = table.list(LEDGER_CLASS, Query().eq("correlation_id", correlation), ["name"], limit=2)
        if rows:
            sys_id = value_of(rows[0]["sys_id"])
        elif create:
            created = table.create(LEDGER_CLASS, {
                "name": "changeops ledger %s" % ledger[:12], "correlation_id": correlation,
                "short_description": "The changeops.itsm ledger at %s (first entry %s): its signed checkpoints are "
                                     "attached, one per file" % (record.get("location") or "?", ledger),
                "discovery_source": self.servicenow.get("data_source") or "ChangeOps"})
            sys_id = value_of(created.get("sys_id"))
        else:
            return None
        self._ledger_cis[ledger] = sys_id
        return sys_id

    def deliver(self, record):
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import ServiceNowError

        name = "%s%012d-%s.json" % (FILE_PREFIX, int(record.get("seq") or 0), (record.get("head") or "")[:16])
        content = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            with self._client() as client:
                table, attachments = self._apis(client)
                attachments.attach_once(LEDGER_CLASS, self._ledger_ci(table, record, create=True), name, content)
        except (ServiceNowError, ChangeopsError) as exc:
            raise WitnessError(exc.message)

    def read(self):
        """The newest checkpoints kept on every ledger CI of the instance (of any ledger: the caller keeps its own)."""
        from ansible_collections.changeops.itsm.plugins.module_utils.checkpoints import RECORD_TYPE
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import ServiceNowError
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, value_of

        records = []
        try:
            with self._client() as client:
                table, attachments = self._apis(client)
                cis = table.list(LEDGER_CLASS, Query().where("correlation_id", "STARTSWITH", CORRELATION_PREFIX),
                                 ["correlation_id"])
                for ci in cis:
                    for row in attachments.listed(LEDGER_CLASS, value_of(ci["sys_id"]), FILE_PREFIX,
                                                  limit=READ_LIMIT):
                        content = attachments.content(value_of(row["sys_id"]))
                        try:
                            found = json.loads((content or b"").decode("utf-8"))
                        except ValueError:
                            continue  # not a checkpoint this witness wrote: nothing to trust
                        if isinstance(found, dict) and found.get("type") == RECORD_TYPE:
                            records.append(found)
        except (ServiceNowError, ChangeopsError) as exc:
            raise WitnessError(exc.message)
        return records
