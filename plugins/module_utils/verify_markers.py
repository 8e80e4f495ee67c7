# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified-up-to markers: where ``ledger_verify`` got to, so that the next verification starts there.

A **marker** is a checkpoint (``checkpoints.py``: ``{v, ledger, location, seq, head, at, key_id, signature}``,
signed as every checkpoint is, so it anchors the history and the witnesses take it unchanged) with an
**attestation** that a verification found every entry up to ``seq`` intact::

    "verified": {"by": "changeops.itsm.ledger_verify", "mode": "full" | "incremental",
                 "from_seq": 0 | the marker that walk started from, "payloads": true | false,
                 "entries": entries walked}
    "verified_signature": Ed25519 over "changeops.itsm verified v1\\n" || canonical_json({at, head, ledger,
                          location, seq, v, verified})

It is recorded as a ``ledger.checkpoint`` entry (so the witness feed hands it to every witness) after a
verification that found the ledger valid, when a signing key is configured.

**Why a marker can be trusted although it sits in the database it vouches for.** The attestation is
signed with the checkpoint key, which is never in the database or its backups (docs/ledger.md, "Keys"),
under its own domain string, so no checkpoint signature can be passed off as one; with public keys
configured only a marker whose attestation verifies is used. Someone who can rewrite the database then can:

* not forge a marker, nor move one to another position or ledger (``seq``, ``head``, ``ledger`` and
  ``location`` are signed);
* delete markers: verification then starts from an older marker, or from the start, and does more work;
* rewrite history before a marker and recompute the hashes: the marker's entry no longer has the marker's
  ``head``, which the incremental verification checks first (``history_mismatch: rewritten``);
* edit an entry before the marker in place, leaving its stored hash: that entry's content no longer
  matches its hash, which only a **full** verification recomputes. This is the price of an incremental
  verification, and why a full one stays scheduled (docs/operations.md).

Without public keys, an unsigned marker is used only when read from a witness (as unsigned checkpoints
are): one read from the database alone could have been written by anyone who can write it.

A marker is as strong as the weakest walk behind it: ``payloads`` is true only when this walk opened every
payload and the marker it started from says so too.
"""

from __future__ import annotations

import base64

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import KIND_CHECKPOINT, Entry

VERIFIED_DOMAIN = b"changeops.itsm verified v1\n"
ATTESTATION = "verified"
#: how a marker's stored data text starts its attestation (canonical JSON): the database's cheap pre-filter
ATTESTATION_TEXT = '"verified":{'
#: newest ledger.checkpoint entries with an attestation read back from the ledger
RECENT_MARKERS = 20


def attestation_message(record):
    """The bytes a marker's ``verified_signature`` covers."""
    return VERIFIED_DOMAIN + canonical_json({key: record.get(key) for key in
                                             ("at", "head", "ledger", "location", "seq", "v", ATTESTATION)}
                                            ).encode("utf-8")


def marker_document(sor, seq, head, attestation, private_key=None, now=None):
    """A marker of entry ``seq`` (hash ``head``) with ``attestation``; unsigned without a key."""
    document = {"v": 1, "ledger": checkpoints.ledger_identity(sor), "location": checkpoints.location_of(sor),
                "seq": seq, "head": head, "at": now or utc_now(), "key_id": None, "signature": None,
                ATTESTATION: dict(attestation), "verified_signature": None}
    if private_key is not None:
        document["key_id"] = checkpoints.key_id(private_key.public_key())
        document["signature"] = base64.b64encode(private_key.sign(checkpoints.signed_message(document))).decode(
            "ascii")
        document["verified_signature"] = base64.b64encode(private_key.sign(attestation_message(document))).decode(
            "ascii")
    return document


def _trust(record, keys, from_witness):
    """``(trusted, signed, problem)`` of one marker record."""
    if not isinstance(record.get(ATTESTATION), dict) or not isinstance(record.get("seq"), int) or not record.get(
            "head"):
        return False, False, None
    if not keys:
        # unsigned (or unchecked) markers count only where the database's writers cannot write
        return from_witness, False, None
    signature = record.get("verified_signature")
    if not signature:
        return False, False, None
    key = keys.get(record.get("key_id"))
    if key is None:
        return False, False, ("the verified-up-to marker of entry %s (%s) is signed by key %s, which is not among"
                              " checkpoint_public_keys" % (record.get("seq"), record.get("at"), record.get("key_id")))
    try:
        key.verify(base64.b64decode(signature), attestation_message(record))
    except (checkpoints.InvalidSignature, ValueError, TypeError):
        return False, False, ("the verified-up-to marker of entry %s (%s) does not verify with key %s: it was forged or"
                              " altered; it is ignored" % (record.get("seq"), record.get("at"), record.get("key_id")))
    return True, True, None


def newest_marker(sor, settings, witness_records=()):
    """``(marker, problems)``: the newest trusted marker of this ledger (a dict: the record plus ``source`` and
    ``signed``), from the ledger's own recent checkpoint entries and from ``witness_records``; None when none."""
    keys = checkpoints.load_public_keys(checkpoints.public_key_paths(settings))
    ledger_id = checkpoints.ledger_identity(sor)
    location = checkpoints.location_of(sor)
    candidates = [(dict(entry.data), "ledger entry %s" % entry.seq, False)
                  for entry in sor.recent_entries([KIND_CHECKPOINT], limit=RECENT_MARKERS,
                                                  data_contains=ATTESTATION_TEXT)]
    candidates += [(dict(record), "witness %s" % record.get("witness"), True) for record in witness_records
                   if ATTESTATION in record]
    problems, best = [], None
    for record, source, from_witness in candidates:
        if record.get("ledger") != ledger_id and record.get("location") != location:
            continue
        trusted, signed, problem = _trust(record, keys, from_witness)
        if problem and problem not in problems:
            problems.append(problem)
        if not trusted:
            continue
        if best is None or (record["seq"], str(record.get("at"))) > (best["seq"], str(best.get("at"))):
            best = dict(record, source=source, signed=signed)
    return best, problems


def marker_view(marker):
    """What ``ledger_verify`` returns about a marker."""
    if marker is None:
        return None
    attestation = marker.get(ATTESTATION) or {}
    return {"seq": marker.get("seq"), "head": marker.get("head"), "at": marker.get("at"),
            "signed": bool(marker.get("signed", marker.get("verified_signature"))), "key_id": marker.get("key_id"),
            "source": marker.get("source"), "mode": attestation.get("mode"), "payloads": attestation.get("payloads"),
            "from_seq": attestation.get("from_seq")}


def already_marked(sor, seq, key_id, payloads):
    """True when entry ``seq`` (the newest verified) is itself a marker of the entry before it, by this key and at
    least as strong: a verification that found only that entry new has nothing new to attest."""
    latest = sor.latest_entry([KIND_CHECKPOINT])
    if latest is None or latest.seq != seq:
        return False
    data = latest.data
    attestation = data.get(ATTESTATION)
    return (data.get("seq") == seq - 1 and data.get("key_id") == key_id and isinstance(attestation, dict)
            and bool(attestation.get("payloads") or not payloads))


def record_marker(sor, settings, report, mode, from_seq, payloads, actor):
    """Append a signed marker of what ``report`` (a valid verification) covers; returns the entry, or None when
    the newest entry already is one. Needs ``checkpoint_key``: a marker nobody signed proves nothing in the
    database (callers check ``settings['checkpoint_key']`` first and say so)."""
    key = checkpoints.load_private_key(settings["checkpoint_key"])
    if not report.head_seq or already_marked(sor, report.head_seq, checkpoints.key_id(key.public_key()), payloads):
        return None
    # as for any checkpoint: never vouch for a history that contradicts the ledger's own newest checkpoint
    checkpoints.check_continuity(sor)
    attestation = {"by": "changeops.itsm.ledger_verify", "mode": mode, "from_seq": from_seq, "payloads": bool(payloads),
                   "entries": report.entries_checked}
    document = marker_document(sor, report.head_seq, report.head_hash, attestation, key)
    appended = sor.append([Entry(KIND_CHECKPOINT, "ledger", document, actor=actor)])
    return appended[0] if appended else None
