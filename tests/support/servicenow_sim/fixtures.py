# -*- coding: utf-8 -*-
"""Every fixture of the ServiceNow simulator, in one place, each with the documentation page it follows.

Page names are paths in ServiceNow's documentation repository (``ServiceNow/ServiceNowDocs``,
``markdown/<path>``, published at ``https://www.servicenow.com/docs/r/<path>.html``); see
``/work/shared/reference/servicenow.md`` for the notes taken from them. Where the simulator had to
choose between shapes the pages disagree on, or assume what no page says, the entry says so
(``ASSUMPTION``): check those against a personal developer instance.

This is test data for a simulator of the documented API, not a copy of any instance.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------------
# Tables and their fields.
# Class inheritance (a query on a parent table returns the records of its child tables; a child has
# its parents' fields): platform-administration/c_UniqueRecordIdentifier.md (sys_id),
# servicenow-platform/service-graph-connectors/cmdb-aws-classes.md (cmdb_ci_server is the parent of
# cmdb_ci_linux_server and cmdb_ci_win_server), api-reference/rest-apis/change-management-api.md
# (change_request fields), api-reference/server-api-reference/c_GlideRecordAPI.md (task_ci).
# Field types: "string", "integer", "boolean", "glide_date_time", "journal", "ref:<table>".
# ASSUMPTION: the smaller classes (cmdb_ci_oslv_container, cmdb_ci_database...) carry only the fields
# the collection maps; a real instance has many more.
# --------------------------------------------------------------------------------------------------
TABLES = {
    "task": (None, {
        "number": "string", "short_description": "string", "description": "string", "state": "integer",
        "active": "boolean", "correlation_id": "string", "correlation_display": "string",
        "assignment_group": "ref:sys_user_group", "assigned_to": "ref:sys_user", "opened_by": "ref:sys_user",
        "cmdb_ci": "ref:cmdb_ci", "approval": "string", "priority": "integer", "impact": "integer",
        "urgency": "integer", "work_start": "glide_date_time", "work_end": "glide_date_time",
        "close_notes": "string", "work_notes": "journal", "comments": "journal", "opened_at": "glide_date_time",
        "closed_at": "glide_date_time",
    }),
    "change_request": ("task", {
        "type": "string", "chg_model": "string", "std_change_producer_version": "ref:std_change_producer_version",
        "start_date": "glide_date_time", "end_date": "glide_date_time", "conflict_status": "string",
        "conflict_last_run": "glide_date_time", "outside_maintenance_schedule": "boolean", "close_code": "string",
        "unauthorized": "boolean", "on_hold": "boolean", "phase": "string", "risk": "integer",
        "category": "string", "justification": "string", "implementation_plan": "string",
        "backout_plan": "string", "test_plan": "string",
        # change-management-api.md lists requested_by among a change's fields (a sys_user, by default the
        # user who raised it)
        "requested_by": "ref:sys_user",
    }),
    "change_task": ("task", {"change_request": "ref:change_request", "change_task_type": "string"}),
    "incident": ("task", {"caller_id": "ref:sys_user", "category": "string", "subcategory": "string",
                          "close_code": "string", "incident_state": "integer"}),
    "task_ci": (None, {"task": "ref:task", "ci_item": "ref:cmdb_ci"}),
    "cmdb_ci": (None, {
        "name": "string", "short_description": "string", "install_status": "integer",
        "operational_status": "integer", "discovery_source": "string", "environment": "string",
        "support_group": "ref:sys_user_group", "managed_by": "ref:sys_user", "owned_by": "ref:sys_user",
        "ip_address": "string", "mac_address": "string", "fqdn": "string", "serial_number": "string",
        "asset_tag": "string", "used_for": "string", "category": "string", "correlation_id": "string",
        "first_discovered": "glide_date_time", "last_discovered": "glide_date_time", "version": "string",
    }),
    "cmdb_ci_hardware": ("cmdb_ci", {"manufacturer": "string", "model_number": "string"}),
    "cmdb_ci_computer": ("cmdb_ci_hardware", {
        "os": "string", "os_version": "string", "cpu_count": "integer", "ram": "integer", "virtual": "boolean",
        "host_name": "string", "os_domain": "string",
    }),
    "cmdb_ci_server": ("cmdb_ci_computer", {"classification": "string"}),
    "cmdb_ci_linux_server": ("cmdb_ci_server", {"kernel_release": "string"}),
    "cmdb_ci_win_server": ("cmdb_ci_server", {}),
    "cmdb_ci_vm_object": ("cmdb_ci", {"object_id": "string"}),
    "cmdb_ci_vm_instance": ("cmdb_ci_vm_object", {"cpus": "integer", "memory": "integer"}),
    "cmdb_ci_oslv_container": ("cmdb_ci", {"container_id": "string", "image": "string"}),
    "cmdb_ci_appl": ("cmdb_ci", {"running_process_command": "string", "tcp_port": "string"}),
    "cmdb_ci_database": ("cmdb_ci", {"type": "string"}),
    "cmdb_ci_service": ("cmdb_ci", {"service_classification": "string"}),
    "cmdb_ci_network_adapter": ("cmdb_ci", {"cmdb_ci": "ref:cmdb_ci"}),
    "cmdb_serial_number": (None, {"cmdb_ci": "ref:cmdb_ci", "serial_number": "string",
                                  "serial_number_type": "string", "valid": "boolean"}),
    "cmdb_rel_type": (None, {"name": "string", "parent_descriptor": "string", "child_descriptor": "string"}),
    "cmdb_rel_ci": (None, {"parent": "ref:cmdb_ci", "child": "ref:cmdb_ci", "type": "ref:cmdb_rel_type"}),
    # IRE's record of which source reported which CI (api-reference/rest-apis/c_IdentifyReconcileAPI.md,
    # sys_object_source_info). ASSUMPTION: the table keeps source_feed as well.
    "sys_object_source": (None, {"name": "string", "id": "string", "target_sys_id": "string",
                                 "target_table": "string", "last_scan": "glide_date_time", "source_feed": "string"}),
    "sys_attachment": (None, {"file_name": "string", "table_name": "string", "table_sys_id": "string",
                              "size_bytes": "integer", "content_type": "string", "download_link": "string"}),
    # api-reference/web-services/retrieving-journal-entries.md: element_id is the record, element the field
    "sys_journal_field": (None, {"element_id": "string", "element": "string", "name": "string",
                                 "value": "string"}),
    "std_change_record_producer": (None, {"name": "string", "active": "boolean", "short_description": "string",
                                          "template_value": "string"}),
    "std_change_producer_version": (None, {"name": "string", "version": "integer",
                                           "std_change_producer": "ref:std_change_record_producer"}),
    "sys_user": (None, {"user_name": "string", "name": "string", "email": "string", "active": "boolean"}),
    # The Approvals table: one record per approver and task (approver, sysapproval: the task, state), which the
    # Change API's approvals call decides "as the calling user" (change-management-api.md, PATCH
    # /change/{sys_id}/approvals). ASSUMPTION: the fields kept here are the base ones (a real instance has
    # more: group, due date, expected start...), and the task's approval is rolled up from them as the call's
    # own decision (a single-approver rule); ServiceNow's approval rules can ask several approvers.
    "sysapproval_approver": (None, {"approver": "ref:sys_user", "sysapproval": "ref:task", "document_id": "string",
                                    "source_table": "string", "state": "string", "comments": "string"}),
    "sys_user_group": (None, {"name": "string", "active": "boolean"}),
    "sys_choice": (None, {"name": "string", "element": "string", "value": "string", "label": "string",
                          "inactive": "boolean"}),
    "sys_db_object": (None, {"name": "string", "label": "string", "super_class": "ref:sys_db_object"}),
    "sys_dictionary": (None, {"name": "string", "element": "string", "internal_type": "string",
                              "reference": "string"}),
}

#: the field a reference shows as its display value
DISPLAY_FIELDS = {"task": "number", "cmdb_ci": "name", "sys_user": "name", "sys_user_group": "name",
                  "cmdb_rel_type": "name", "std_change_record_producer": "name", "std_change_producer_version": "name",
                  "sys_db_object": "name"}

#: auto-numbered tables: prefix and first number (api-reference/rest-apis/change-management-api.md shows CHG
#: numbers assigned by the instance: "number": "CHG0000024")
NUMBERS = {"change_request": ("CHG", 30001), "incident": ("INC", 10001), "change_task": ("CTASK", 10001)}

# --------------------------------------------------------------------------------------------------
# Choices. it-service-management/change-management/c_ChangeStateModel.md (legacy state values, which
# the models since Quebec keep); change-management-api.md (type, approval); the install/operational
# status labels are the base choice lists of cmdb_ci.
# --------------------------------------------------------------------------------------------------
CHOICES = {
    ("change_request", "state"): {"-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled",
                                  "-1": "Implement", "0": "Review", "3": "Closed", "4": "Canceled"},
    ("change_request", "type"): {"standard": "Standard", "normal": "Normal", "emergency": "Emergency"},
    ("task", "approval"): {"not requested": "Not Yet Requested", "requested": "Requested", "approved": "Approved",
                           "rejected": "Rejected"},
    ("cmdb_ci", "install_status"): {"1": "Installed", "2": "On Order", "3": "In Maintenance", "4": "Pending Install",
                                    "5": "Pending Repair", "6": "In Stock", "7": "Retired", "100": "Absent"},
    ("cmdb_ci", "operational_status"): {"1": "Operational", "2": "Non-Operational", "3": "Repair in Progress",
                                        "4": "DR Standby", "5": "Ready", "6": "Retired"},
    # api-reference/rest-apis/c_IdentifyReconcileAPI.md: sysparm_data_source must be a choice of
    # cmdb_ci.discovery_source, which an administrator adds. ASSUMPTION: "ChangeOps" was added.
    ("cmdb_ci", "discovery_source"): {"ServiceNow": "ServiceNow", "SCCM": "SCCM", "Manual Entry": "Manual Entry",
                                      "Other Automated": "Other Automated", "ChangeOps": "ChangeOps"},
}

# --------------------------------------------------------------------------------------------------
# The legacy change state model (c_ChangeStateModel.md): one step at a time; standard changes skip
# Assess and Authorize, emergency changes skip Assess; Review cannot be canceled. A PATCH asking for
# any other move answers 200 and leaves the state as it was (servicenow.itsm #257/#278).
# ASSUMPTION: closing without close_code and close_notes is refused with 403 (a data policy), as
# servicenow.itsm's change_request module checks both before closing.
# --------------------------------------------------------------------------------------------------
STATE_MODEL = {
    "normal": {"-5": ["-4", "4"], "-4": ["-3", "-5", "4"], "-3": ["-2", "-5", "4"], "-2": ["-1", "-5", "4"],
               "-1": ["0", "4"], "0": ["3"]},
    "standard": {"-5": ["-2", "4"], "-2": ["-1", "4"], "-1": ["0", "4"], "0": ["3"]},
    "emergency": {"-5": ["-3", "4"], "-3": ["-2", "-5", "4"], "-2": ["-1", "4"], "-1": ["0", "4"], "0": ["3"]},
}
#: states reached only with an approval (Authorize -> Scheduled needs approval=approved)
NEEDS_APPROVAL = {"-2": ("normal", "emergency")}

# --------------------------------------------------------------------------------------------------
# Identification rules (IRE). api-reference/rest-apis/c_IdentifyReconcileAPI.md shows the answer's
# identificationAttempts (identifierName, attemptResult MATCHED/NO_MATCH/MULTI_MATCH/SKIPPED,
# attributes, searchOnTable). ASSUMPTION: a small subset of the base rules, in priority order:
# hardware by serial number (lookup table, then field), then name, then the network adapter's MAC
# address; applications and everything else by name within their class.
# --------------------------------------------------------------------------------------------------
IDENTIFICATION_RULES = [
    {"name": "Hardware Rule", "applies_to": "cmdb_ci_hardware", "entries": [
        {"lookup": "cmdb_serial_number", "attributes": ["serial_number", "serial_number_type"],
         "search_on": "cmdb_serial_number"},
        {"attributes": ["serial_number"], "search_on": "cmdb_ci_hardware"},
        {"attributes": ["name"], "search_on": "cmdb_ci_hardware"},
        {"lookup": "cmdb_ci_network_adapter", "attributes": ["mac_address"], "search_on": "cmdb_ci_network_adapter"},
    ]},
    {"name": "Application Rule", "applies_to": "cmdb_ci_appl", "entries": [
        {"attributes": ["name"], "search_on": "cmdb_ci_appl"}]},
    {"name": "Independent Rule", "applies_to": "cmdb_ci", "entries": [
        {"attributes": ["name"], "search_on": "@class"}]},
]

# cmdb_rel_type names (api-reference/rest-apis/cmdb-instance-api.md; servicenow.itsm looks them up by
# sys_name, e.g. "Depends on::Used by")
RELATION_TYPES = ["Runs on::Runs", "Depends on::Used by", "Hosted on::Hosts", "Members::Member of",
                  "IP Connection::IP Connection", "Virtualized by::Virtualizes"]

# --------------------------------------------------------------------------------------------------
# Standard change templates (change-management-api.md: POST /change/standard/{template sys_id}; the
# template lives in std_change_record_producer; servicenow.itsm #310). Fixed sys_ids so that tests
# and the demo can name them.
# --------------------------------------------------------------------------------------------------
STANDARD_TEMPLATES = [
    {"sys_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "name": "Patch Linux servers", "active": "true",
     "short_description": "Apply vendor patches to Linux servers",
     "template_value": "short_description=Apply vendor patches to Linux servers^risk=4^impact=3"},
    {"sys_id": "b2c3d4e5f60718293a4b5c6d7e8f9a01", "name": "Rotate TLS certificate", "active": "true",
     "short_description": "Replace an expiring TLS certificate", "template_value": "risk=4^impact=3"},
    {"sys_id": "c3d4e5f60718293a4b5c6d7e8f9a0b12", "name": "Retired template", "active": "false",
     "short_description": "No longer offered", "template_value": ""},
]

GROUPS = [{"sys_id": "d4e5f60718293a4b5c6d7e8f9a0b1c23", "name": "CAB Approval", "active": "true"},
          {"sys_id": "e5f60718293a4b5c6d7e8f9a0b1c2d34", "name": "Linux Ops", "active": "true"}]

# --------------------------------------------------------------------------------------------------
# Accounts. Roles per api-reference/rest-apis/change-management-api.md (GET: change_manager, itil,
# sn_change_read, admin; POST/PATCH: change_manager, itil, admin) and c_IdentifyReconcileAPI.md (itil
# or asset). api-reference/rest-api-explorer/c_RESTAPI.md: with multi-factor authentication a Basic
# 401 carries X-MFA_TOKEN. Tests replace these credentials with their own (secrets they plant).
# --------------------------------------------------------------------------------------------------
USERS = {
    "admin": {"password": "admin-simulator-password", "roles": ["admin"], "name": "System Administrator"},
    "changeops.integration": {"password": "integration-simulator-password",
                              "roles": ["itil", "asset", "change_manager"], "name": "ChangeOps Integration"},
    "reader": {"password": "reader-simulator-password", "roles": ["sn_change_read"], "name": "Read Only"},
    "mfa.user": {"password": "mfa-simulator-password", "roles": ["itil"], "name": "MFA User", "mfa": True},
    "cab.manager": {"password": "cab-simulator-password", "roles": ["change_manager"], "name": "CAB Manager"},
}
#: x-sn-apikey values -> user (platform-security/authentication/configure-api-key.md)
API_KEYS = {"simulator-api-key-0123456789": "changeops.integration"}
#: OAuth application registry entries (api-reference/rest-api-explorer/r_RESTOAuthExample.md;
#: platform-security/authentication/client-credentials-grant-workflow.md): client_credentials runs as ``user``
OAUTH_CLIENTS = {"changeops-client": {"secret": "client-simulator-secret", "user": "changeops.integration"}}
#: r_RESTOAuthExample.md answers expires_in 1799
TOKEN_LIFETIME = 1799

#: roles that may call each API (ACL stand-in); "any" = every authenticated user
ROLES = {
    "change_read": ("change_manager", "itil", "sn_change_read", "admin"),
    "change_write": ("change_manager", "itil", "admin"),
    "ire": ("itil", "asset", "admin"),
    "cmdb_write": ("itil", "asset", "admin"),
    "task_write": ("itil", "change_manager", "admin"),
}

#: Inbound rate limiting (api-reference/rest-api-explorer/inbound-REST-API-rate-limiting.md): the body of a
#: denied request
RATE_LIMIT_BODY = {"error": {"message": "Rate limit exceeded",
                             "detail": "Rate limit of %d requests per hour for REST API exceeded"},
                   "status": "failure"}
#: Transaction quotas (platform-administration/platform-performance/c_DefaultQuotaRules.md; servicenow.itsm
#: #76). ASSUMPTION: answered with HTTP 500.
TRANSACTION_CANCELLED_BODY = {"error": {"message": "Transaction cancelled: maximum execution time exceeded",
                                        "detail": "maximum execution time exceeded Check logs for error trace "
                                                  "or enable glide.rest.debug property to verify REST request "
                                                  "processing"}, "status": "failure"}
#: r_RESTAPIHTTPResponseCodes.md: 403 for "business rule or data policy constraints"
BUSINESS_RULE_BODY = {"error": {"message": "Operation Failed",
                                "detail": "Data Policy Exception: a business rule aborted the update"},
                      "status": "failure"}
#: servicenow.itsm tests/unit/plugins/modules/test_attachment_info.py: the Table API v1 404 for no rows
NO_RECORD_BODY = {"error": {"message": "No Record found",
                            "detail": "Records matching query not found. Check query parameter or offset parameter"},
                  "status": "failure"}
