# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redacting a field of a ledger entry without breaking the chain: the plan (pure) and ``ledger_redact``.

``plan_redaction(entry, fields)`` works out, from an entry as stored, what a redaction writes:
the tombstoned payload, the salts kept for the other fields, each redacted field's commitment
and the payload root the chain (formats 2 and 3) or the ``ledger.redacted`` entry (format 1) covers.
``SystemOfRecord.redact_entry`` applies it inside one write transaction, with the
``ledger.redacted`` entry and the query tables; :func:`redact_ledger` (the module's operation)
then scrubs the spool and regenerates the register. See docs/ledger.md.
"""

from __future__ import annotations

import binascii
import os

from ansible_collections.changeops.itsm.plugins.module_utils import commitments, protected_fields
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, NotFound, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.state_paths import state_spool_dir
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    FORMAT_LEGACY,
    KIND_REDACTED,
    Entry,
)

#: Fields the query tables are keyed on or that decide a change event's authorisation (``protected_fields.py``,
#: where verification reads them too)
PROTECTED_FIELDS = protected_fields.PROTECTED_FIELDS

#: what to do instead, for the kinds where "redact the fields that hold the secret's text" is not enough
PROTECTED_HINTS = {
    "policy.published": " (the published document is what the gate enforced; redact the version's text and "
                        "publish a corrected policy with changeops.itsm.change_policy)",
}

LEDGER_REDACT_SPEC = dict(
    backend_argument_spec(),
    entry=dict(type="str"),
    fields=dict(type="list", elements="str"),
    redactions=dict(type="list", elements="dict"),
    secret_findings=dict(type="list", elements="dict", no_log=False),
    reason=dict(type="str", required=True),
    spool_dirs=dict(type="list", elements="path"),
    register_path=dict(type="path"),
    register_json_path=dict(type="path"),
    compact=dict(type="bool", default=True),
)
LEDGER_REDACT_MUTUALLY_EXCLUSIVE = [["entry", "redactions"], ["entry", "secret_findings"]]
LEDGER_REDACT_REQUIRED_ONE_OF = [["entry", "redactions", "secret_findings"]]
LEDGER_REDACT_REQUIRED_TOGETHER = [["entry", "fields"]]

DEFAULT_SPOOL_DIR = "~/.ansible/changeops/spool"


def _protected(kind, path):
    """The protected path that ``path`` is or lies in, or None."""
    return protected_fields.protected_path(kind, path)


def finding_field(entry, path):
    """What clears a secret found at ``path`` of ``entry`` (a ``redaction.find_secrets`` path from the entry,
    such as ``("data", "result", "stdout")``, as ``ledger_verify scan_secrets`` reports it).

    ``(field, None)``: the committed field to redact (a path tuple; a top-level object whole, when the
    secret is its value); ``(None, why not)`` when no redaction can remove it.
    """
    if entry.kind.startswith("ledger."):
        return None, "the ledger's own bookkeeping (%s) holds no payload to redact" % entry.kind
    if not path or path[0] != "data" or len(path) < 2:
        return None, ("it is in the entry's %s, which the chain hashes as it is (only payload fields can be "
                      "redacted)" % (path[0] if path else "header"))
    inside = tuple(path[1:])
    fields = set(path for path, _value in commitments.iter_fields(entry.data, cut=entry.cut()))
    field = next((inside[:length] for length in (2, 1) if len(inside) >= length and inside[:length] in fields), None)
    if field is None and len(inside) == 1 and inside[0] in entry.data:
        field = inside  # a top-level object or array: every field in it
    if field is None:
        return None, "it is in the name of a key, which the payload's commitments keep"
    protected = _protected(entry.kind, field)
    if protected is not None:
        return None, ("it is in field %s, from which the query tables or the change event's authorisation are "
                      "derived" % commitments.path_text(protected))
    return field, None


def already_redacted(entry, field):
    """True when the field (a :func:`finding_field` tuple) holds a tombstone: what was found is the marker."""
    value = entry.data.get(field[0])
    if len(field) > 1 and isinstance(value, (dict, list)):
        try:
            value = value[field[1]]
        except (KeyError, IndexError, TypeError):
            return False
    return commitments.is_tombstone(value)


class Plan(object):
    """What redacting ``fields`` of one stored entry writes; built by :func:`plan_redaction`."""

    def __init__(self, entry):
        self.entry = entry
        #: ``[(path, commitment_hex, value_json)]`` to tombstone now
        self.new = []
        #: paths already tombstoned (nothing to do: idempotence)
        self.already = []
        self.payload_root = None
        self._salts = None
        self._tombstones = None

    @property
    def changes(self):
        return bool(self.new)

    def record_data(self, reason, redacted_by, redacted_at):
        entry = self.entry
        return {
            "entry_seq": entry.seq, "entry_id": entry.id, "entry_kind": entry.kind, "entry_hash": entry.hash,
            "entry_format": entry.format, "payload_root": self.payload_root,
            "fields": [{"field": commitments.path_text(path), "path_json": commitments.path_json(path),
                        "commitment": digest} for path, digest, _value in self.new],
            "reason": reason, "redacted_by": redacted_by, "redacted_at": redacted_at,
        }

    def stored_state(self, redaction_seq):
        """``(data_json, redactions)`` the entry's row holds once ledger entry ``redaction_seq`` redacted it."""
        data = self.entry.data
        for path, _digest, _value in self.new:
            data = commitments.with_field_replaced(data, path, commitments.tombstone(redaction_seq))
        tombstones = dict(self._tombstones)
        for path, digest, _value in self.new:
            tombstones[commitments.path_json(path)] = digest
        return canonical_json(data), {"salts": self._salts, "tombstones": tombstones}

    def describe(self):
        return ["entry %s (%s %s) %s" % (self.entry.seq, self.entry.kind, self.entry.subject,
                                         commitments.path_text(path)) for path, _d, _v in self.new]


def plan_redaction(entry, fields):
    """The :class:`Plan` for redacting ``fields`` (texts, see ``commitments.resolve_field``) of ``entry``.

    Checks the entry first: a payload that no longer opens its commitments (or, for an entry of
    format 1, no longer matches its hash) is refused, since a tombstone would then cover an edit.
    """
    label = "entry %s (%s %s)" % (entry.seq, entry.kind, entry.subject)
    if entry.kind.startswith("ledger."):
        raise ValidationError("%s is the ledger's own bookkeeping (%s): it holds no payload to redact"
                              % (label, entry.kind), entry=entry.seq)
    problem = entry.check_payload()
    if problem is None and not (entry.format == FORMAT_LEGACY and entry.redactions):
        if entry.compute_hash(entry.prev_hash or "") != entry.hash:
            problem = "its content does not match its hash"
    if problem is not None:
        raise ConflictError("%s cannot be redacted: %s. The ledger was altered; run changeops.itsm.ledger_verify "
                            "to see where. Nothing was redacted" % (label, problem), entry=entry.seq)
    data, cut = entry.data, entry.cut()
    wanted = []
    for text in fields:
        try:
            paths = commitments.resolve_field(data, text, cut=cut)
        except commitments.UnknownField as exc:
            raise ValidationError("fields: %s: %s" % (label, exc), field=text, entry=entry.seq)
        for path in paths:
            protected = _protected(entry.kind, path)
            if protected is not None:
                raise ValidationError(
                    "fields: %s: field %s cannot be redacted: the query tables or the change event's authorisation "
                    "are derived from %s. Redact the fields that hold the secret's text instead%s"
                    % (label, commitments.path_text(path), commitments.path_text(protected),
                       PROTECTED_HINTS.get(entry.kind, "")),
                    field=text, entry=entry.seq)
            if path not in wanted:
                wanted.append(path)
    plan = Plan(entry)
    tombstones = dict((entry.redactions or {}).get("tombstones") or {})
    if entry.redactions:
        salts = list(entry.redactions.get("salts") or [])
        plan.payload_root = entry.payload_root
    else:
        seed = entry.salt
        if entry.format == FORMAT_LEGACY or not seed:
            # format 1: commit its fields now, with fresh salts, while its hash still proves its content
            seed = commitments.new_seed()
        count = commitments.field_count(data, cut=cut)
        salts = [binascii.hexlify(salt).decode("ascii") for salt in commitments.salts_from_seed(seed, count)]
        plan.payload_root = commitments.payload_root(data, seed, cut=cut)
    fields_in_order = [path for path, _value in commitments.iter_fields(data, cut=cut)]
    for path in wanted:
        key = commitments.path_json(path)
        if key in tombstones:
            plan.already.append(path)
            continue
        index = fields_in_order.index(path)
        value_json = commitments.encode_value(commitments.field_value(data, path))
        digest = commitments.commitment(binascii.unhexlify(salts[index]), path, value_json)
        plan.new.append((path, binascii.hexlify(digest).decode("ascii"), value_json))
        salts[index] = None
    plan._salts = salts
    plan._tombstones = tombstones
    return plan


def redaction_entry(plan, reason, redacted_by, actor):
    """The ``ledger.redacted`` entry (subject: the redacted entry's id) for ``plan``."""
    return Entry(KIND_REDACTED, plan.entry.id, plan.record_data(reason, redacted_by, utc_now()), actor=actor)


# --------------------------------------------------------------------------------------------
# the module's operation
# --------------------------------------------------------------------------------------------
def _entry_ref(label, item, keys):
    ref = next((item.get(key) for key in keys if item.get(key) not in (None, "")), None)
    if ref is None:
        raise ValidationError("%s: names no entry (give %s): %r" % (label, " or ".join(keys), item))
    return str(ref).strip()


def _finding_targets(findings):
    """``([(label, entry_ref, [field])], [finding that names no field])`` from ``secret_findings``: the
    ``findings`` of ``ledger_verify scan_secrets`` as they are (``seq``/``id``, ``field``, ``path``)."""
    targets, unredactable = [], []
    for index, item in enumerate(findings):
        label = "secret_findings[%d]" % index
        if not isinstance(item, dict):
            raise ValidationError("%s: a finding of ledger_verify's secret_scan is a dict, got %r" % (label, item))
        ref = _entry_ref(label, item, ("seq", "id"))
        if "field" not in item:
            raise ValidationError("%s: has no field (give the findings of changeops.itsm.ledger_verify with "
                                  "scan_secrets: true, from its secret_scan.findings)" % label)
        if not item["field"]:
            unredactable.append(item)
            continue
        targets.append((label, ref, [str(item["field"])]))
    return targets, unredactable


def _targets(params):
    """``[(label, entry_ref, [field, ...])]`` from ``entry``/``fields``, the ``redactions`` list and the
    ``secret_findings``; and the findings that name no field that can be redacted."""
    if params.get("entry") is not None:
        if not params.get("fields"):
            raise ValidationError("fields: name at least one field of entry %s to redact" % params["entry"])
        return [("entry", str(params["entry"]).strip(), list(params["fields"]))], []
    targets = []
    for index, item in enumerate(params.get("redactions") or []):
        label = "redactions[%d]" % index
        ref = _entry_ref(label, item, ("entry", "seq", "entry_seq", "entry_id"))
        # one of fields, field or path (the first given): not several spellings of the same place
        fields = item.get("fields") or item.get("field") or item.get("path")
        if isinstance(fields, str):
            fields = [fields]
        if not fields:
            raise ValidationError("%s: names no field of entry %s (give field or fields)" % (label, ref))
        targets.append((label, ref, [str(field) for field in fields]))
    if params.get("redactions") is not None and not params["redactions"]:
        raise ValidationError("redactions: the list is empty")
    found, unredactable = _finding_targets(params.get("secret_findings") or [])
    targets.extend(found)
    merged = []
    for label, ref, fields in targets:
        for existing in merged:
            if existing[1] == ref:
                existing[2].extend(field for field in fields if field not in existing[2])
                break
        else:
            merged.append((label, ref, list(fields)))
    return merged, unredactable


def _find(sor, label, ref):
    entry = sor.get_entry(ref)
    if entry is None:
        point = sor.archive_point()
        if point is not None and str(ref).strip().isdigit() and int(ref) <= point["last_seq"]:
            archive = next((item for item in sor.archives() if item["first_seq"] <= int(ref) <= item["last_seq"]), None)
            raise NotFound(
                "%s: entry %s was archived (in %s, by ledger entry %s): an archived entry is redacted in its archive"
                " file, which this module does not rewrite; see docs/operations.md, 'Redacting an archived entry'"
                % (label, ref, archive["file"] if archive else "an archive", archive["seq"] if archive else "?"),
                entry=ref)
        raise NotFound("%s: the ledger has no entry %s (give its sequence number or its id)" % (label, ref),
                       entry=ref)
    return entry


def _diff_line(entry_label, path, text):
    return "%s %s: %s\n" % (entry_label, commitments.path_text(path), text)


def redact_ledger(ctx):
    """``ledger_redact``: tombstone the fields, record why, then clear every other copy the collection keeps."""
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import os_user
    from ansible_collections.changeops.itsm.plugins.module_utils import redaction_scrub

    params = ctx.params
    reason = (params.get("reason") or "").strip()
    if not reason:
        raise ValidationError("reason: say why the fields are redacted (it is recorded in the ledger)")
    plans = []
    targets, unredactable = _targets(params)
    for label, ref, fields in targets:
        entry = _find(ctx.sor, label, ref)
        plans.append((label, ref, plan_redaction(entry, fields)))
    redacted, already, before, after = [], [], [], []
    for label, ref, plan in plans:
        entry = plan.entry
        entry_label = "entry %s (%s)" % (entry.seq, entry.kind)
        already.extend({"seq": entry.seq, "entry_id": entry.id, "kind": entry.kind,
                        "field": commitments.path_text(path)} for path in plan.already)
        if not plan.changes:
            continue
        record = None
        if not ctx.check_mode:
            record = ctx.sor.redact_entry(entry.seq, [path for path, _d, _v in plan.new], reason, os_user(),
                                          ctx.actor)
        for path, _digest, value_json in plan.new:
            redacted.append({"seq": entry.seq, "entry_id": entry.id, "kind": entry.kind,
                             "field": commitments.path_text(path),
                             "redacted_by": record.seq if record is not None else None})
            # never the value itself: this result is recorded too
            before.append(_diff_line(entry_label, path, "<a value of %d characters>" % len(value_json)))
            after.append(_diff_line(entry_label, path, commitments.tombstone(record.seq) if record is not None
                                    else "[redacted by the next ledger entry]"))
    not_redactable = [{"seq": item.get("seq"), "id": item.get("id"), "kind": item.get("kind"),
                       "path": item.get("path"), "detector": item.get("detector"),
                       "reason": item.get("not_redactable") or "the finding names no field"} for item in unredactable]
    result = {"changed": bool(redacted), "redacted": redacted, "already_redacted": already,
              "not_redactable": not_redactable, "backend": ctx.sor.describe()}
    if redacted:
        result["msg"] = "%sredacted %d field%s: %s" % ("would have " if ctx.check_mode else "", len(redacted),
                                                       "" if len(redacted) == 1 else "s",
                                                       ", ".join("entry %s %s" % (item["seq"], item["field"])
                                                                 for item in redacted))
    elif plans:
        result["msg"] = "nothing to redact: every field named is redacted already"
    else:
        result["msg"] = "nothing to redact: no finding names a field"
    if not_redactable:
        # still in the ledger: say so where people look, not only in the result
        ctx.warn("%d secret finding%s cannot be removed by a redaction: %s" % (
            len(not_redactable), "" if len(not_redactable) == 1 else "s",
            "; ".join("entry %s %s (%s)" % (item["seq"], item["path"], item["reason"]) for item in not_redactable)))
    if ctx.diff and redacted:
        result["diff"] = {"before": "".join(before), "after": "".join(after)}
    if ctx.check_mode or not redacted:
        return result
    # everything else the collection keeps that may hold the values
    result["storage"] = ctx.sor.scrub_storage(compact=params.get("compact", True))
    for warning in result["storage"].get("warnings", []):
        ctx.warn(warning)
    targets = [(plan.entry.id, [(path, value_json) for path, _d, value_json in plan.new])
               for _label, _ref, plan in plans if plan.changes]
    config_file = getattr(ctx, "config_file", None) or os.environ.get("ANSIBLE_CONFIG")
    sections = _ini_sections(config_file)
    try:
        result["spool_files_scrubbed"] = redaction_scrub.scrub_spools(
            spool_dirs(params, ini=sections, config_file=config_file), targets)
    except OSError as exc:
        result["spool_files_scrubbed"] = []
        ctx.warn("the spool could not be scrubbed and may still hold the redacted values: %s (%s); run the module"
                 " again once it is writable" % (exc.strerror or exc, getattr(exc, "filename", "")))
    result["external_copies"] = copies_sent_elsewhere(ctx.sor, [plan.entry for _label, _ref, plan in plans
                                                                if plan.changes])
    for copy in result["external_copies"]:
        ctx.warn("entry %s (%s) had been delivered to %s (its cursor is at %s) before this redaction: the copy there "
                 "(a work note or the run's attachment on its CHG, a CI's fields, an evidence attachment) is outside "
                 "the collection's reach; remove it in that system"
                 % (copy["seq"], copy["kind"], copy["target"], copy["cursor_seq"]))
    result["register"] = redaction_scrub.regenerate_register(
        ctx, register_settings(params, ini=sections, config_file=config_file))
    return result


def spool_dirs(params, environ=None, ini=(), config_file=None):
    """The spool directories to scrub: ``spool_dirs``, else both locations the recorder writes entries to, as
    it resolves them: its ``spool_dir`` and its ``spool_fallback_dir`` (by default the platform's state
    directory, ``state_paths.state_spool_dir``). A relative path in ``config_file``, the ansible.cfg ``ini``
    was read from, is relative to its folder."""
    from ansible_collections.changeops.itsm.plugins.module_utils.config import path_from_ini

    if params.get("spool_dirs"):
        return [os.path.expanduser(path) for path in params["spool_dirs"]]
    environ = os.environ if environ is None else environ

    def setting(name, env, default):
        if environ.get(env):
            return os.path.expanduser(environ[env])
        for section in ini:
            if section.get(name):
                return path_from_ini(section[name], config_file)
        return default

    found = [setting("spool_dir", "CHANGEOPS_SPOOL_DIR", os.path.expanduser(DEFAULT_SPOOL_DIR))]
    fallback = setting("spool_fallback_dir", "CHANGEOPS_SPOOL_FALLBACK_DIR", state_spool_dir(environ))
    if os.path.realpath(fallback) != os.path.realpath(found[0]):
        found.append(fallback)
    return found


def copies_sent_elsewhere(sor, entries):
    """``[{seq, kind, target, cursor_seq}]``: redacted entries a sync target's cursor had passed, of kinds whose
    content the outbox sends (a run's notes and its change event attached to its CHG, a CI's fields through
    IRE, evidence attachments: everything but task results, change requests, policies and the ledger's own
    entries). Such a target may hold a copy that no tool of the collection can reach."""
    try:
        states = sor.list_sync_states()
    except NotImplementedError:
        return []
    copies = []
    for entry in entries:
        sent = entry.kind.startswith("ci.") or entry.kind == "evidence.recorded" or (
            entry.kind.startswith("run.") and entry.kind != "run.result")
        if not sent:
            continue
        for state in states:
            if (state.get("cursor_seq") or 0) >= entry.seq:
                copies.append({"seq": entry.seq, "kind": entry.kind, "target": state["target"],
                               "cursor_seq": state["cursor_seq"]})
    return copies


def register_settings(params, environ=None, ini=(), config_file=None):
    """``(path, json_path, title)`` of the register to regenerate (None when none is configured)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.config import path_from_ini

    environ = os.environ if environ is None else environ

    def setting(name, env, is_path=True):
        if params.get(name):
            return params[name]
        if environ.get(env):
            return environ[env]
        for section in ini:
            if section.get(name):
                return path_from_ini(section[name], config_file) if is_path else section[name]
        return None

    path = setting("register_path", "CHANGEOPS_REGISTER_PATH")
    if not path:
        return None
    json_path = setting("register_json_path", "CHANGEOPS_REGISTER_JSON_PATH")
    title = setting("register_title", "CHANGEOPS_REGISTER_TITLE", is_path=False) or "Change register"
    return (os.path.expanduser(path), os.path.expanduser(json_path) if json_path else None, title)


def _ini_sections(config_file):
    """``[changeops]`` and ``[callback_change_recorder]`` of the ansible.cfg in force (the recorder reads both)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.config import read_ini_sections

    return read_ini_sections(config_file, ("changeops", "callback_change_recorder"))
