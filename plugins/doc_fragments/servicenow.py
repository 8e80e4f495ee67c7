# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ServiceNow options (module_utils/servicenow/settings.py): servicenow.itsm's instance options and ours."""

from __future__ import annotations


class ModuleDocFragment(object):
    # The instance option of every module that talks to ServiceNow.
    DOCUMENTATION = r"""
options:
  instance:
    description:
      - The ServiceNow instance and how to use it. The connection options carry
        C(servicenow.itsm)'s names and environment variables, so its users configure nothing twice.
      - Each option not set here comes from its environment variable, then from the
        C([changeops_servicenow]) section of C(ansible.cfg), then its default.
      - Setting any option here uses ServiceNow for this task; otherwise ServiceNow is used only
        when O(instance.enabled) is true (E(CHANGEOPS_SERVICENOW)).
      - See U(https://github.com/changeops/changeops.itsm/blob/main/docs/servicenow.md).
    type: dict
    suboptions:
      host:
        description: The instance URL, for example V(https://example.service-now.com) (E(SN_HOST)).
        type: str
      username:
        description: User name for basic authentication or the OAuth password grant (E(SN_USERNAME)).
        type: str
      password:
        description: Password of O(instance.username) (E(SN_PASSWORD)). Never recorded or shown.
        type: str
      client_id:
        description: OAuth client id (E(SN_CLIENT_ID)); with O(instance.client_secret) selects OAuth.
        type: str
      client_secret:
        description: OAuth client secret (E(SN_CLIENT_SECRET)). Never recorded or shown.
        type: str
      grant_type:
        description:
          - OAuth grant (E(SN_GRANT_TYPE)); V(password) when not set. Tokens are refreshed a minute
            before they expire and fetched again once after a 401.
        type: str
        choices: [password, refresh_token, client_credentials]
      refresh_token:
        description: OAuth refresh token for O(instance.grant_type=refresh_token) (E(SN_REFRESH_TOKEN)).
        type: str
      access_token:
        description: A bearer token to send as it is (E(SN_ACCESS_TOKEN)); it is not refreshed.
        type: str
      api_key:
        description: An API key, sent as the C(x-sn-apikey) header (E(SN_API_KEY)).
        type: str
      api_path:
        description:
          - Base path of the Table, Attachment and IRE APIs.
          - Default V(api/now).
        type: str
      custom_headers:
        description: Extra HTTP headers sent with every request.
        type: dict
      timeout:
        description:
          - Seconds one request may take (E(SN_TIMEOUT)).
          - Default V(10).
        type: float
      validate_certs:
        description:
          - Verify the instance's TLS certificate. Prefer O(instance.ca_path) for a private CA; V(false) warns.
          - Default V(true).
        type: bool
      client_certificate_file:
        description: Client certificate for mutual TLS (E(SN_CLIENT_CERTIFICATE_FILE)).
        type: path
      client_key_file:
        description: Key of O(instance.client_certificate_file) (E(SN_CLIENT_KEY_FILE)).
        type: path
      enabled:
        description:
          - Use ServiceNow when this task sets no other O(instance) option
            (E(CHANGEOPS_SERVICENOW)); the gate then reads change requests from it and the recorder feeds it.
          - Default V(false).
        type: bool
      ca_path:
        description: CA bundle to verify the instance's certificate with (E(CHANGEOPS_SERVICENOW_CA_PATH)).
        type: path
      max_requests:
        description:
          - Most requests one task or one drain may send, retries and token requests included.
          - Default V(2000).
        type: int
      rate_limit_wait:
        description:
          - Most seconds one task or drain waits in total for 429 answers (their C(Retry-After) or
            C(X-RateLimit-Reset), or O(instance.rate_limit_cooldown)); past it the request fails and the
            outbox keeps the entry for later.
          - Default V(30).
        type: float
      rate_limit_cooldown:
        description:
          - Seconds to wait after a 429 that says neither C(Retry-After) nor C(X-RateLimit-Reset).
          - Default V(60).
        type: float
      retries:
        description:
          - Retries (exponential backoff) after a connection error or a 502, 503 or 504.
          - Default V(4).
        type: int
      backoff:
        description:
          - First backoff delay in seconds; it doubles with every retry (at most 30 s, with jitter).
          - Default V(0.5).
        type: float
      page_size:
        description:
          - Rows per Table API page (C(sysparm_limit)).
          - Default V(1000).
        type: int
      batch_size:
        description:
          - Most CIs per IRE request.
          - Default V(100).
        type: int
      data_source:
        description:
          - The IRE data source (C(sysparm_data_source), a choice of C(cmdb_ci.discovery_source) that an
            administrator adds) and the source name of every CI pushed.
          - Default V(ChangeOps).
        type: str
      sync_timeout:
        description:
          - The end-of-run budget - most seconds the end of a run waits for ServiceNow (the recorder's background
            delivery is cut to it, then delivers what is left), and most seconds a task's C(servicenow_push=now)
            delivery may take.
          - Default V(30).
        type: float
      close_change_requests:
        description:
          - After a run authorised by a ServiceNow CHG, move it to this state with a close code from the outcome.
          - Default V(none).
        type: str
        choices: [none, review, closed]
      unauthorised_runs:
        description:
          - Deprecated, to be removed in 2.0.0 - set C(servicenow.unauthorised_runs) in the change policy instead
            (it wins when both are set, with a warning). What records a run that changed hosts without
            authorisation in ServiceNow (E(CHANGEOPS_SERVICENOW_UNAUTHORISED_RUNS)).
          - Used only when the change policy in force does not say; a warning says it is deprecated.
            Neither set means V(change).
        type: str
        choices: [change, incident]
      register_url:
        description: URL of the published change register, linked from work notes.
        type: str
      assignment_group:
        description: Assignment group of the change requests and incidents changeops creates.
        type: str
      witness:
        description:
          - Keep the ledger's signed checkpoints in ServiceNow too, as a witness of the chain's head (attachments
            on a CI that stands for the ledger; see docs/ledger.md and docs/servicenow.md).
          - Costs about four requests per checkpoint (one per recorded run).
          - Default V(false). E(CHANGEOPS_SERVICENOW_WITNESS).
        type: bool
      class_map:
        description: Our CI class to ServiceNow class, overriding the defaults (see docs/servicenow.md).
        type: dict
      field_map:
        description: Our CI attribute to ServiceNow field, overriding the defaults; map to V("") to send nothing.
        type: dict
"""

    # register_host and configuration_item: when the CI reaches ServiceNow.
    PUSH = r"""
options:
  servicenow_push:
    description:
      - With ServiceNow configured (see O(instance)), when the CI reaches ServiceNow's CMDB through IRE.
      - V(deferred) leaves it in the ledger's outbox, delivered by the recorder with the other CIs of the
        run, many per IRE request - in the background while the run goes on once a full batch waits, the
        rest at its end.
      - V(now) delivers the outbox from this task and fails the task when ServiceNow refused this CI
        (an IRE C(MULTI_MATCH) or item error, naming the host and the identifier rule).
      - In check mode the task asks IRE's query variant what it would do instead, and fails on a
        C(MULTI_MATCH) or an item error. An unreachable or rate-limited ServiceNow only warns.
    type: str
    choices: [deferred, now]
    default: deferred
"""
