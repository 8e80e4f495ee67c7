# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ServiceNow, around the ledger: the CMDB (IRE), the change authority the gate asks, a sync target.

PRIVATE to the collection. One small module per concern, servicenow.itsm's split:

``settings``     the options (servicenow.itsm's names and ``SN_*`` variables, plus ours) and their precedence
``errors``       what can go wrong, as ``ChangeopsError`` subclasses whose messages never hold a secret
``auth``         basic, OAuth 2 (password, refresh-token, client-credentials) and API-key credentials
``client``       the one HTTP client (requests): timeouts, TLS, retries, 429s, the request budget
``table``        Table API: encoded queries that a misspelt field cannot widen, pagination, records
``change``       Change Management API (sn_chg_rest): read a CHG for the gate, standard changes, notes
``attachments``  Attachment API
``ire``          Identification and Reconciliation: our CIs as IRE items, class and field mapping
``outbox``       the ledger as an outbox: what each entry becomes in ServiceNow, the cursor, the drain
``authority``    the change gate's view of a ServiceNow CHG (fail-closed, the documented local fallback)
``operations``   the servicenow_sync / servicenow_sync_info operations
``inventory``    hosts read from ServiceNow's CMDB for the cmdb inventory plugin
"""
