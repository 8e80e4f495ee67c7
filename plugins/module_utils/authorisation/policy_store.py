# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change policy published into the system of record, and which policy is in force.

A published version is one ``policy.published`` ledger entry (subject ``change-policy``): its
number, the sha256 of the file's bytes, the file's text and validated document, the previous
version, who published it (an authenticated identity), when, what it changes (``policy_diff``)
and what authorised the publication. The newest version is the policy in force. Publishing is
itself a change that needs authorisation: the rules of the policy in force decide (``publishing``
in the policy; for the first version, the rules of the version being published).

Which policy a gate decides under (:func:`gate_policy`):

* a published policy exists: that one. A runner's policy file (the gate's ``policy``,
  ``CHANGEOPS_GATE_POLICY``, ``gate_policy`` in ansible.cfg) is used only when its sha256 is the
  published version's; any other file is refused naming both hashes, except in a ``--check`` run,
  which also evaluates it as a *draft*, side by side;
* nothing published yet: the configured file (or the built-in default policy), as before
  publishing existed, and the decision says ``policy.state: unpublished``.

The change_request and change_review modules read their separation-of-duties rules from the same
place (:func:`policy_in_force`).
"""

from __future__ import annotations

import os

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties, policy_diff
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import parse_time, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec, path_from_ini
from ansible_collections.changeops.itsm.plugins.module_utils.errors import NotFound, Refused, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

SUBJECT = "change-policy"
KIND = "policy.published"
POLICY_ENV = "CHANGEOPS_GATE_POLICY"

PUBLISHED, UNPUBLISHED, DRAFT = "published", "unpublished", "draft"

CHANGE_POLICY_SPEC = dict(
    backend_argument_spec(),
    src=dict(type="path", required=True),
    change_request=dict(type="str"),
    comment=dict(type="str"),
)

CHANGE_POLICY_INFO_SPEC = dict(
    backend_argument_spec(),
    version=dict(type="int"),
    include_text=dict(type="bool", default=False),
    limit=dict(type="int", default=20),
)

#: validated published versions by sha256: a worker reads the policy once per play; a process that
#: decides many times (a benchmark, a long-lived service) validates each version once
_PARSED = {}


def _allow_keys():
    return [key for _field, key, _text, _avoid in change_policy.BLIND_SPOTS]


def policy_from_record(record):
    """The validated :class:`change_policy.Policy` of a published version (from its stored document)."""
    digest = record["sha256"]
    policy = _PARSED.get(digest)
    if policy is None:
        policy = change_policy.parse_policy(record.get("document") or {}, "published change policy version %d"
                                            % record["version"], digest)
        if len(_PARSED) > 16:
            _PARSED.clear()
        _PARSED[digest] = policy
    return policy


class PolicyInForce(object):
    """A policy and where it comes from: ``published`` (with its version), ``unpublished`` or ``draft``."""

    def __init__(self, policy, state, record=None, source=None):
        self.policy = policy
        self.state = state
        self.record = record
        self.source = source or policy.origin

    @property
    def version(self):
        return self.record.get("version") if self.record else None

    def describe(self):
        """What a decision or an approval records of the policy it was made under."""
        described = self.policy.describe()
        described.update(state=self.state, source=self.source)
        if self.record:
            described.update(version=self.record["version"], sha256=self.record["sha256"],
                             published_at=self.record.get("published_at"),
                             publisher=self.record.get("publisher"))
        return described

    def label(self):
        if self.state == PUBLISHED:
            return "published policy version %s (sha256 %s)" % (self.version, self.record["sha256"][:12])
        if self.state == DRAFT:
            return "draft %s (sha256 %s, not published)" % (self.source, (self.policy.digest or "")[:12])
        return "unpublished policy %s" % self.source


class GatePolicy(object):
    """What the gate decides under: ``in_force``, a ``refusal`` (a runner's file that is not the published
    policy, in a real run) and, in a ``--check`` run, the runner's ``draft`` to evaluate side by side."""

    def __init__(self, in_force, refusal=None, draft=None):
        self.in_force = in_force
        self.refusal = refusal
        self.draft = draft


def configured_policy_path(environ=None, ini=None, ini_file=None):
    """The policy file configured for this controller (``CHANGEOPS_GATE_POLICY``, then ``gate_policy`` in the
    ``[changeops]`` section of ansible.cfg, relative to that file), or None."""
    environ = os.environ if environ is None else environ
    if environ.get(POLICY_ENV):
        return os.path.expanduser(environ[POLICY_ENV])
    value = (ini or {}).get("gate_policy")
    if value:
        return path_from_ini(value, ini_file)
    return None


def policy_in_force(sor, configured_path=None):
    """The policy whose rules apply now: the published version in force, else the configured file, else the
    built-in default (both ``unpublished``)."""
    record = sor.get_policy()
    if record is not None:
        return PolicyInForce(policy_from_record(record), PUBLISHED, record)
    return PolicyInForce(change_policy.load_policy(configured_path), UNPUBLISHED)


def in_force_for(ctx):
    """:func:`policy_in_force` for an operation: its action plugin found the configured file (env, ansible.cfg);
    a module run directly knows the environment only."""
    return policy_in_force(ctx.sor, ctx.policy_path or configured_policy_path())


def _file_refusal(path, digest, record, older):
    published_by = (record.get("publisher") or {}).get("name") or "?"
    text = ("the change policy file %s (sha256 %s) is not the published policy in force: version %d (sha256 %s, "
            "published by %s at %s)" % (path, digest, record["version"], record["sha256"], published_by,
                                        record.get("published_at")))
    if older:
        text += "; the file is version %d, superseded" % older[0]["version"]
    return text + ("; leave out policy (CHANGEOPS_GATE_POLICY, gate_policy) to use the published policy, or "
                   "publish this file with changeops.itsm.change_policy")


def gate_policy(sor, runner_path, check_mode=False):
    """Which policy the gate decides under (see the module docstring). Raises ``ValidationError`` for a runner
    file that cannot be read or, where it is used, does not validate."""
    record = sor.get_policy()
    if record is None:
        return GatePolicy(PolicyInForce(change_policy.load_policy(runner_path), UNPUBLISHED))
    in_force = PolicyInForce(policy_from_record(record), PUBLISHED, record)
    if runner_path is None:
        return GatePolicy(in_force)
    path, raw = change_policy.read_policy_file(runner_path)
    digest = change_policy.policy_digest(raw)
    if digest == record["sha256"]:
        return GatePolicy(in_force)
    if check_mode:
        draft = change_policy.parse_policy_text(raw, path)
        return GatePolicy(in_force, draft=PolicyInForce(draft, DRAFT, source=path))
    return GatePolicy(in_force, refusal=_file_refusal(path, digest, record, sor.find_policies(sha256=digest)))


# --------------------------------------------------------------------------
# change_policy: publish a version
# --------------------------------------------------------------------------
def _public(record, include_text=False):
    if record is None:
        return None
    return {key: value for key, value in record.items() if include_text or key not in ("text", "document")}


def publish_policy(ctx):
    """``change_policy`` operation: publish ``src`` as the next version, if the policy in force allows this identity."""
    params = ctx.params
    path, raw = change_policy.read_policy_file(params["src"])
    new = change_policy.parse_policy_text(raw, path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # parse_policy_text refused it already; keep the reason if not
        raise ValidationError("%s: not UTF-8 text: %s" % (path, exc), file=path)
    current = ctx.sor.get_policy()
    current_policy = policy_from_record(current) if current else None
    if current is not None and current["sha256"] == new.digest:
        result = {"changed": False, "version": current["version"], "sha256": current["sha256"],
                  "policy": _public(current),
                  "msg": "%s is already the published change policy (version %d)" % (path, current["version"])}
        if ctx.diff:
            result["diff"] = {"before": text, "after": text}
        return result

    number = params.get("change_request")
    request = None
    if number:
        request = ctx.sor.get_change_request(number)
        if request is None:
            raise NotFound("change_request: %s does not exist in the system of record" % number, number=number)
    now = utc_now()
    # the rules in force decide; nothing is in force yet for the first version: its own rules do
    rules = (current_policy or new).authorisation
    refused = duties.refusals("publish", ctx.identity, rules, change_request=request, now=parse_time(now))
    if refused:
        raise Refused("publishing %s refused by the %s: %s" % (
            path, "policy in force (version %d)" % current["version"] if current else "policy being published (the "
            "first version: no policy is in force yet)", duties.describe(refused)), refusals=refused)

    summary = policy_diff.summarise(current_policy, new, _allow_keys())
    lines = policy_diff.summary_lines(summary, new)
    version = (current["version"] if current else 0) + 1
    data = {
        "version": version,
        "sha256": new.digest,
        "previous_version": current["version"] if current else None,
        "previous_sha256": current["sha256"] if current else None,
        "published_at": now,
        "publisher": ctx.identity.to_dict(),
        "source": path,
        "comment": params.get("comment"),
        "summary": summary,
        "authorised_by": {
            "rules_of": "version %d" % current["version"] if current else "the version published (first version)",
            "publishers": rules.publishing.publishers,
            "change_request": number,
        },
        "text": text,
        "document": new.document or {},
    }
    result = {"changed": True, "version": version, "sha256": new.digest, "summary": summary,
              "msg": "change policy version %d%s: %s" % (version, " would be published" if ctx.check_mode else
                                                         " published from %s" % path, "; ".join(lines))}
    if ctx.diff:
        result["diff"] = [
            {"prepared": "\n".join(["change policy version %s -> %d" % (current["version"] if current else "(none)",
                                                                        version)] + ["  " + line for line in lines])},
            {"before": current["text"] if current else "", "after": text,
             "before_header": "published version %d" % current["version"] if current else "(nothing published)",
             "after_header": path},
        ]
    if not ctx.check_mode:
        ctx.sor.append([Entry(KIND, SUBJECT, data, actor=ctx.actor, entry_id="policy-%d-%s" % (version, new.digest))])
        result["policy"] = _public(ctx.sor.get_policy(version))
    return result


def query_policies(ctx):
    """``change_policy_info`` operation."""
    params = ctx.params
    if params.get("limit") is not None and params["limit"] < 1:
        raise ValidationError("limit must be at least 1, got %r" % params["limit"])
    active = ctx.sor.get_policy()
    result = {"changed": False, "state": PUBLISHED if active else UNPUBLISHED,
              "active": _public(active, params.get("include_text")),
              "history": ctx.sor.find_policies(limit=params.get("limit"))}
    if params.get("version") is not None:
        record = ctx.sor.get_policy(params["version"])
        if record is None:
            raise NotFound("version: change policy version %d is not published (%s)" % (
                params["version"], "versions 1 to %d exist" % active["version"] if active else "nothing is published"),
                version=params["version"])
        result["policy"] = _public(record, params.get("include_text"))
    if active is None:
        result["msg"] = ("no change policy is published: the gate uses the configured policy file (or the built-in "
                         "default) and marks its decisions policy: unpublished")
    else:
        result["msg"] = "change policy version %d (sha256 %s) is in force since %s, published by %s" % (
            active["version"], active["sha256"], active.get("published_at"),
            (active.get("publisher") or {}).get("name"))
    return result
