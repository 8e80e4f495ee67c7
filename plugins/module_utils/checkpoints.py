# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signed checkpoints of the chain's head, and checking a ledger against them.

A **checkpoint** says "entry ``seq`` of the ledger ``ledger`` (the hash of its first entry,
kept at ``location``) had hash ``head`` at time ``at``", signed with an Ed25519 key
(``cryptography``; without a key it is an unsigned head hash). Making one appends a
``ledger.checkpoint`` entry holding it; the witnesses (``witnesses/``) are then fed from the
ledger, each from its own cursor, and keep it outside the database. ``ledger_verify`` reads
the newest checkpoints the witnesses hold and, with only the public keys, checks that the
chain still has that hash at that position: a history rewritten consistently (an entry
edited, every later hash recomputed) or cut short is reported from the checkpoints alone.

Settings (:data:`CHECKPOINT_OPTIONS`) resolve like the backend options: argument >
environment variable > ``[changeops]`` (then ``[callback_change_recorder]``) of ansible.cfg >
default. See docs/ledger.md for keys, permissions and rotation.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError, MissingDependency
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import KIND_CHECKPOINT, Entry

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
except ImportError as _import_error:  # pragma: no cover - depends on the controller's Python
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _import_error
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

RECORD_TYPE = "changeops.ledger.checkpoint"
SIGNING_DOMAIN = b"changeops.itsm checkpoint v1\n"
INI_SECTIONS = ("changeops", "callback_change_recorder")


def default_witness_file(environ=None):
    """``$XDG_STATE_HOME/changeops/checkpoints.jsonl`` (``~/.local/state`` by default): away from the ledger's
    own directory (``~/.ansible/changeops``), so a copy of that directory does not carry its witness along."""
    environ = os.environ if environ is None else environ
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "changeops", "checkpoints.jsonl")


CHECKPOINT_OPTIONS = {
    "checkpoint_key": {"type": "path", "env": "CHANGEOPS_CHECKPOINT_KEY", "default": None},
    "checkpoint_public_keys": {"type": "list", "env": "CHANGEOPS_CHECKPOINT_PUBLIC_KEYS", "default": None},
    "witness_file": {"type": "path", "env": "CHANGEOPS_WITNESS_FILE", "default": default_witness_file},
    "witness_syslog": {"type": "str", "env": "CHANGEOPS_WITNESS_SYSLOG", "default": "auto",
                       "choices": ("auto", "true", "false")},
    "witness_syslog_address": {"type": "path", "env": "CHANGEOPS_WITNESS_SYSLOG_ADDRESS", "default": "/dev/log"},
    "witness_command": {"type": "str", "env": "CHANGEOPS_WITNESS_COMMAND", "default": None},
    "checkpoint_sources": {"type": "list", "env": "CHANGEOPS_CHECKPOINT_SOURCES", "default": None},
}

#: argument spec entries for modules (None means "not given": the next source decides)
CHECKPOINT_ARGUMENT_SPEC = {
    "checkpoint_key": {"type": "path", "no_log": False},
    "checkpoint_public_keys": {"type": "list", "elements": "path"},
    "witness_file": {"type": "str"},
    "witness_syslog": {"type": "str", "choices": ["auto", "true", "false"]},
    "witness_syslog_address": {"type": "path"},
    "witness_command": {"type": "str"},
    "checkpoint_sources": {"type": "list", "elements": "path"},
}

_FALSE = ("", "none", "off", "false", "no")


def _coerce(name, value, origin):
    option = CHECKPOINT_OPTIONS[name]
    if option["type"] == "list":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        return [os.path.expanduser(str(part)) for part in value if str(part).strip()] or None
    value = str(value).strip()
    if option.get("choices"):
        lowered = value.lower()
        lowered = {"yes": "true", "on": "true", "1": "true", "no": "false", "off": "false", "0": "false"}.get(
            lowered, lowered)
        if lowered not in option["choices"]:
            raise ConfigurationError("%s: option %s must be one of %s, got %r"
                                     % (origin, name, ", ".join(option["choices"]), value))
        return lowered
    if option["type"] == "path":
        if name == "witness_file" and value.lower() in _FALSE:
            return None  # switched off
        return os.path.expandvars(os.path.expanduser(value)) if value else None
    return value or None


def _from_file(name, value, config_file):
    """A path option's value read from ``config_file``: a relative path is relative to that file's folder."""
    from ansible_collections.changeops.itsm.plugins.module_utils.config import path_from_ini

    if value is None or not config_file or CHECKPOINT_OPTIONS[name]["type"] not in ("path", "list"):
        return value
    if isinstance(value, list):
        return [path_from_ini(part, config_file) for part in value]
    return path_from_ini(value, config_file)


def resolve_settings(params=None, environ=None, ini_sections=(), config_file=None, origins=None):
    """Every checkpoint option by precedence; ``ini_sections``: dicts of ansible.cfg sections, first wins.

    ``config_file``: the ansible.cfg ``ini_sections`` come from; ``origins``: ``{option: ansible.cfg path}``
    for ``params`` that Ansible read from a file (the recorder's options). Relative paths from a file are
    relative to its folder.
    """
    params = params or {}
    origins = origins or {}
    environ = os.environ if environ is None else environ
    settings = {}
    for name, option in CHECKPOINT_OPTIONS.items():
        if params.get(name) is not None:
            settings[name] = _from_file(name, _coerce(name, params[name], "argument"), origins.get(name))
            continue
        if environ.get(option["env"]) is not None:
            settings[name] = _coerce(name, environ[option["env"]], "environment variable %s" % option["env"])
            continue
        for section_name, section in zip(INI_SECTIONS, ini_sections):
            if section.get(name) is not None:
                settings[name] = _from_file(
                    name, _coerce(name, section[name], "ansible.cfg [%s] %s" % (section_name, name)), config_file)
                break
        else:
            default = option["default"]
            if callable(default):
                default = default(environ)
            settings[name] = _coerce(name, default, "default") if default is not None else None
    return settings


def settings_for(ctx, params=None):
    """Settings for a module's operation: its arguments, the environment, the ansible.cfg in force."""
    from ansible_collections.changeops.itsm.plugins.module_utils.config import read_ini_sections

    config_file = getattr(ctx, "config_file", None) or os.environ.get("ANSIBLE_CONFIG")
    return resolve_settings(params if params is not None else ctx.params, os.environ,
                            read_ini_sections(config_file, INI_SECTIONS), config_file=config_file)


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------
def _need_cryptography(what):
    if not HAS_CRYPTOGRAPHY:
        raise MissingDependency("%s needs the Python library 'cryptography' on the controller (pip install "
                                "cryptography; it comes with ansible-core): %s" % (what, CRYPTOGRAPHY_IMPORT_ERROR))


def key_id(public_key):
    """First 16 hex digits of SHA-256 over the raw 32-byte public key: names the key in checkpoints."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path):
    """The Ed25519 private key at ``path``; refuses one that others can read or that is not Ed25519."""
    _need_cryptography("signing checkpoints (checkpoint_key %s)" % path)
    try:
        info = os.stat(path)
        with open(path, "rb") as handle:
            pem = handle.read()
    except OSError as exc:
        raise ConfigurationError("checkpoint_key: cannot read %s: %s" % (path, exc.strerror or exc), path=path)
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            "checkpoint_key: %s is accessible to other users (mode %04o): whoever can read it can sign checkpoints;"
            " chmod 600 it" % (path, stat.S_IMODE(info.st_mode)), path=path)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError("checkpoint_key: %s is not an unencrypted PEM private key: %s" % (path, exc),
                                 path=path)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("checkpoint_key: %s is a %s key, not Ed25519 (make one with openssl genpkey"
                                 " -algorithm ed25519)" % (path, type(key).__name__.replace("PrivateKey", "")), path=path)
    return key


def load_public_keys(paths):
    """``{key_id: public key}`` from PEM public keys (or private keys, whose public half is used)."""
    keys = {}
    for path in paths or ():
        _need_cryptography("checking signed checkpoints (checkpoint_public_keys %s)" % path)
        try:
            with open(path, "rb") as handle:
                pem = handle.read()
        except OSError as exc:
            raise ConfigurationError("checkpoint_public_keys: cannot read %s: %s" % (path, exc.strerror or exc),
                                     path=path)
        try:
            if b"PRIVATE KEY" in pem:
                key = serialization.load_pem_private_key(pem, password=None).public_key()
            else:
                key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError("checkpoint_public_keys: %s is not a PEM key: %s" % (path, exc), path=path)
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError("checkpoint_public_keys: %s is not an Ed25519 key" % path, path=path)
        keys[key_id(key)] = key
    return keys


def public_key_paths(settings):
    """The public keys verification trusts: ``checkpoint_public_keys``, else the ``.pub`` beside the
    signing key, else the signing key itself."""
    if settings.get("checkpoint_public_keys"):
        return list(settings["checkpoint_public_keys"])
    key = settings.get("checkpoint_key")
    if key and os.path.exists(key + ".pub"):
        return [key + ".pub"]
    if key and os.path.exists(key):
        return [key]
    return []


def generate_key(path):
    """Write a new Ed25519 key pair: ``path`` (PKCS#8 PEM, mode 0600, never overwritten) and ``path.pub``
    (0644). Returns the key id."""
    _need_cryptography("generating a checkpoint key")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigurationError("checkpoint_key: cannot create %s: %s" % (path, exc.strerror or exc), path=path)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
        handle.flush()
        os.fsync(handle.fileno())
    with open(path + ".pub", "wb") as handle:
        handle.write(public)
    os.chmod(path + ".pub", 0o644)
    return key_id(key.public_key())


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def location_of(sor):
    """Where the ledger lives, for telling checkpoints of several ledgers apart (no secret in it)."""
    path = getattr(sor, "path", None)
    if sor.backend_name == "sqlite" and path:
        return "sqlite:%s" % os.path.realpath(os.path.expanduser(path))
    return sor.describe()


def ledger_identity(sor):
    """What names the ledger in checkpoints: the hash of its first entry (kept when that entry is archived)."""
    return sor.ledger_identity()


def signed_message(record):
    """The bytes an Ed25519 signature of a checkpoint covers."""
    return SIGNING_DOMAIN + canonical_json({key: record.get(key) for key in
                                            ("at", "head", "ledger", "location", "seq", "v")}).encode("utf-8")


def checkpoint_document(sor, private_key=None, now=None, entry=None):
    """The checkpoint of the ledger's head as it is now (None for an empty ledger); of ``entry`` ``(seq, hash)``
    when given (an archive's last entry)."""
    seq, head = entry if entry else sor.head()
    if not seq:
        return None
    document = {"v": 1, "ledger": ledger_identity(sor), "location": location_of(sor),
                "seq": seq, "head": head, "at": now or utc_now(), "key_id": None, "signature": None}
    if private_key is not None:
        document["key_id"] = key_id(private_key.public_key())
        document["signature"] = base64.b64encode(private_key.sign(signed_message(document))).decode("ascii")
    return document


def latest_checkpoint_entry(sor):
    return sor.latest_entry([KIND_CHECKPOINT])


def needs_checkpoint(sor, signing_key_id=None):
    """False when the newest entry is a checkpoint of the one before it, signed by ``signing_key_id``
    (None: unsigned): there is nothing new to sign."""
    seq, _head = sor.head()
    if not seq:
        return False
    latest = latest_checkpoint_entry(sor)
    return not (latest is not None and latest.seq == seq and latest.data.get("seq") == seq - 1
                and latest.data.get("key_id") == signing_key_id)


def check_continuity(sor):
    """Refuse to sign a head whose history contradicts the ledger's newest checkpoint: signing it would vouch
    for a rewrite. Raises ``ConflictError`` naming the entry."""
    from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError

    latest = latest_checkpoint_entry(sor)
    if latest is None or not isinstance(latest.data.get("seq"), int):
        return
    seq, head = latest.data["seq"], latest.data.get("head")
    entry = sor.get_entry(str(seq))
    point = sor.archive_point() if entry is None else None
    if point is not None and seq <= point["last_seq"]:
        # archived since: the boundary's hash is in the ledger.archived entry; earlier ones in the archive file
        if seq < point["last_seq"] or point["last_hash"] == head:
            return
        entry = Entry(KIND_CHECKPOINT, None, {}, entry_id="archived", seq=seq, hash=point["last_hash"])
    if entry is None or entry.hash != head:
        raise ConflictError(
            "not signing: the ledger's history changed since its checkpoint of entry %d (%s, recorded as entry %d):"
            " that entry's hash was %s and is now %s. Someone rewrote or cut the ledger; run"
            " changeops.itsm.ledger_verify" % (seq, latest.data.get("at"), latest.seq, (head or "")[:16],
                                               entry.hash[:16] if entry is not None else "missing"), entry=seq)


def make_checkpoint(sor, settings, actor):
    """Append a checkpoint of the head unless the head is one already; returns the entry or None."""
    key = load_private_key(settings["checkpoint_key"]) if settings.get("checkpoint_key") else None
    if not needs_checkpoint(sor, key_id(key.public_key()) if key is not None else None):
        return None
    check_continuity(sor)
    document = checkpoint_document(sor, key)
    appended = sor.append([Entry(KIND_CHECKPOINT, "ledger", document, actor=actor)])
    return appended[0] if appended else None


def witness_record(entry):
    """What a witness keeps: the checkpoint and where the ledger recorded it."""
    record = dict(entry.data)
    record.update(type=RECORD_TYPE, entry_seq=entry.seq, entry_hash=entry.hash, controller=socket.gethostname())
    return record


# --------------------------------------------------------------------------------------------
# verification against the witnesses
# --------------------------------------------------------------------------------------------
def _describe(record):
    if record.get("signature"):
        who = "the checkpoint signed by key %s at %s" % (record.get("key_id"), record.get("at"))
    else:
        who = "the unsigned checkpoint of %s" % record.get("at")
    return "%s (witness %s)" % (who, record.get("witness"))


def _trust(record, keys):
    """``(trusted, verified, problem)`` for one record read from a witness.

    With public keys configured only a checkpoint whose signature verifies is trusted. Without any, every
    checkpoint is compared by its hash alone (``verified`` False), as an unsigned one would be.
    """
    signature = record.get("signature")
    if not keys:
        return True, False, None
    if not signature:
        return False, False, None  # with keys configured, an unsigned checkpoint proves nothing (older, or forged)
    key = keys.get(record.get("key_id"))
    if key is None:
        return False, False, "%s is signed by key %s, which is not among checkpoint_public_keys" % (
            _describe(record), record.get("key_id"))
    try:
        key.verify(base64.b64decode(signature), signed_message(record))
    except (InvalidSignature, ValueError, TypeError):
        return False, False, ("%s does not verify with key %s: it was forged or altered in the witness; it is "
                              "ignored" % (_describe(record), record.get("key_id")))
    return True, True, None


#: ``(trusted, verified, problem)`` of a checkpoint record under ``keys`` (archives check theirs with it)
trust = _trust


def anchors_from(records, ledger_id, location, keys):
    """``(anchors, info)``: the checks ``verify_rows`` makes from every trusted checkpoint read.

    Every one counts, not just the newest: a run signing the head after a rewrite (the recorder signs what
    it finds) must not bless the rewrite; the older checkpoints still contradict it. A checkpoint belongs to
    this ledger when its first-entry hash or its location is this ledger's; one whose location matches but
    whose first entry differs says the ledger was rewritten from its start.
    """
    problems = []
    trusted_records = {}
    newest = {}
    other_ledgers = 0
    untrusted = 0
    for record in records:
        if record.get("ledger") != ledger_id and record.get("location") != location:
            other_ledgers += 1
            continue
        trusted, verified, problem = _trust(record, keys)
        if problem:
            problems.append(problem)
        if not trusted or not isinstance(record.get("seq"), int) or not record.get("head"):
            untrusted += 1
            continue
        record = dict(record, verified=verified)
        trusted_records.setdefault((record["seq"], record["head"], record.get("ledger")), record)
        witness = record.get("witness")
        if witness not in newest or record["seq"] > newest[witness]["seq"]:
            newest[witness] = record
    anchors = []
    for (seq, head, first), record in sorted(trusted_records.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        common = {"witness": record.get("witness"), "at": record.get("at"), "signed": record["verified"],
                  "key_id": record.get("key_id")}
        if first != ledger_id and ledger_id is not None:
            anchors.append(dict(common, seq=1, hash=first,
                                detail_rewritten="history rewritten from the start: the ledger at %s begins with another"
                                " first entry than %s recorded (%s)" % (location, _describe(record), (first or "")[:16]),
                                detail_truncated="the ledger is empty, but %s covers entry %s" % (_describe(record), seq)))
        anchors.append(dict(
            common, seq=seq, hash=head,
            detail_rewritten="history rewritten: entry %s no longer has the hash %s that %s recorded; entries up to %s"
                             " were changed and the chain recomputed" % (seq, head[:16], _describe(record), seq),
            detail_truncated="ledger truncated: %s covers entry %s, which the ledger no longer holds: entries were"
                             " removed from its end" % (_describe(record), seq)))
    info = {"read": len(records), "other_ledgers": other_ledgers, "untrusted": untrusted, "checked": len(trusted_records),
            "problems": problems, "signed": any(record["verified"] for record in newest.values()),
            "anchors": [{"seq": record["seq"], "hash": record["head"], "witness": witness, "at": record.get("at"),
                         "signed": record["verified"], "key_id": record.get("key_id")}
                        for witness, record in sorted(newest.items(), key=lambda item: str(item[0]))]}
    return anchors, info


def checkpoint_summary(info, keys_configured):
    if not info["anchors"]:
        if info["read"]:
            return ("no trusted checkpoint of this ledger in the witnesses (%d read: of other ledgers, unsigned, or not"
                    " signed by a key in checkpoint_public_keys)" % info["read"])
        return "no checkpoint found in the witnesses: nothing outside the database vouches for the history"
    newest = max(info["anchors"], key=lambda anchor: anchor["seq"])
    also = " and %d older" % (info["checked"] - 1) if info["checked"] > 1 else ""
    if newest["signed"]:
        return "history matches the signed checkpoint of entry %s%s (%s, key %s, witness %s)" % (
            newest["seq"], also, newest["at"], newest["key_id"], newest["witness"])
    text = "history matches the checkpoint of entry %s%s (%s, witness %s)" % (
        newest["seq"], also, newest["at"], newest["witness"])
    if not keys_configured:
        text += ("; not signature-checked (no checkpoint_key or checkpoint_public_keys configured): anyone who can"
                 " write a witness can forge a checkpoint")
    return text


def witness_anchors(sor, settings, with_records=False):
    """``(anchors, info)`` for ``SystemOfRecord.verify``: what the witnesses hold about this ledger
    (``with_records``: ``(anchors, info, records)``, the records as read, for the verified-up-to markers)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import read_witnessed

    records, problems = read_witnessed(settings)
    keys = load_public_keys(public_key_paths(settings))
    anchors, info = anchors_from(records, ledger_identity(sor), location_of(sor), keys)
    info["problems"] = problems + info["problems"]
    info["public_keys"] = sorted(keys)
    info["summary"] = checkpoint_summary(info, bool(keys))
    return (anchors, info, records) if with_records else (anchors, info)


# --------------------------------------------------------------------------------------------
# the ledger_checkpoint module's operation
# --------------------------------------------------------------------------------------------
def ledger_checkpoint_spec():
    from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec

    spec = dict(backend_argument_spec())
    for name in ("checkpoint_key", "witness_file", "witness_syslog", "witness_syslog_address", "witness_command"):
        spec[name] = dict(CHECKPOINT_ARGUMENT_SPEC[name])
    spec["generate_key"] = dict(type="bool", default=False)
    return spec


LEDGER_CHECKPOINT_SPEC = ledger_checkpoint_spec()


def _checkpoint_view(entry):
    if entry is None:
        return None
    data = entry.data
    return {"entry_seq": entry.seq, "seq": data.get("seq"), "head": data.get("head"), "at": data.get("at"),
            "ledger": data.get("ledger"), "signed": bool(data.get("signature")), "key_id": data.get("key_id")}


def checkpoint_ledger(ctx):
    """``ledger_checkpoint``: sign the head now (unless it is signed already) and feed the witnesses."""
    from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import (
        configured_witnesses,
        cursor_name,
        feed_witnesses,
        pending_checkpoints,
    )

    settings = settings_for(ctx)
    sor = ctx.sor
    result = {"changed": False, "backend": sor.describe()}
    key_path = settings.get("checkpoint_key")
    generated = False
    if ctx.params.get("generate_key"):
        if not key_path:
            raise ValidationError("generate_key: set checkpoint_key to the path where the new key is to be kept")
        if not os.path.exists(key_path):
            generated = True
            if not ctx.check_mode:
                generate_key(key_path)
    if key_path and os.path.exists(key_path):
        key = load_private_key(key_path)
        result["key"] = {"path": key_path, "public_key_path": key_path + ".pub", "key_id": key_id(key.public_key()),
                         "generated": generated}
    elif generated:
        result["key"] = {"path": key_path, "public_key_path": key_path + ".pub", "key_id": None, "generated": True}
    else:
        result["key"] = None
        if key_path:
            raise ValidationError("checkpoint_key: %s does not exist (generate_key: true makes one)" % key_path)
        ctx.warn("no checkpoint_key configured: the checkpoint is an unsigned head hash, which anyone who can write a"
                 " witness can forge (see docs/ledger.md, 'Keys')")
    before = _checkpoint_view(latest_checkpoint_entry(sor))
    witnesses = configured_witnesses(settings)
    needed = needs_checkpoint(sor, (result["key"] or {}).get("key_id"))
    if ctx.check_mode:
        behind = [witness.name for witness in witnesses if pending_checkpoints(sor, witness)]
        seq, head = sor.head()
        result.update(changed=bool(generated or needed or behind), checkpoint=before,
                      would_checkpoint={"seq": seq, "head": head} if needed else None,
                      witnesses=[{"witness": witness.name, "cursor": sor.witness_cursor(cursor_name(witness)),
                                  "delivered": 0, "error": None} for witness in witnesses])
        return result
    entry = make_checkpoint(sor, settings, ctx.actor) if needed else None
    fed = feed_witnesses(sor, settings, warn=ctx.warn, witnesses=witnesses)
    after = _checkpoint_view(latest_checkpoint_entry(sor))
    result.update(changed=bool(generated or entry is not None or any(item["delivered"] for item in fed)),
                  checkpoint=after, witnesses=fed)
    if not witnesses:
        ctx.warn("no witness is configured (witness_file is off and there is no syslog socket): the checkpoint is"
                 " kept only in the ledger itself, where it proves nothing")
    if ctx.diff and result["changed"]:
        def line(view):
            if view is None:
                return "no checkpoint\n"
            return "checkpoint of entry %s (%s), %s, recorded as entry %s\n" % (
                view["seq"], (view["head"] or "")[:16], "signed by key %s" % view["key_id"] if view["signed"]
                else "unsigned", view["entry_seq"])
        result["diff"] = {"before": line(before), "after": line(after) + "".join(
            "witness %s: %d delivered\n" % (item["witness"], item["delivered"]) for item in fed)}
    return result
