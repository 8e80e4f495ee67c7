# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The system log witness: one ``user.notice`` message per checkpoint, tagged ``changeops-ledger``.

Sent as a datagram to the local syslog socket (``witness_syslog_address``, ``/dev/log``), which
systemd-journald or rsyslog own on a normal host and usually forward off the machine. Option
``witness_syslog``: ``auto`` (the default) sends when the socket exists and stays silent when it
does not (containers), ``true`` warns when it cannot send, ``false`` never sends. Reading back
for ``ledger_verify`` asks ``journalctl`` when there is a journal; a syslog file or a copy from
the central log server can be named in ``checkpoint_sources``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import (
    Witness,
    WitnessError,
    register_witness_type,
)
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses.file import MARKER, parse_checkpoint_line

IDENT = "changeops-ledger"
#: facility user (1) * 8 + severity notice (5)
PRIORITY = 13
JOURNAL_LINES = 2000


@register_witness_type
def _configured(settings):
    mode = settings.get("witness_syslog") or "auto"
    address = settings.get("witness_syslog_address") or "/dev/log"
    if mode == "false" or (mode == "auto" and not os.path.exists(address)):
        return None
    return SyslogWitness(settings, address)


class SyslogWitness(Witness):
    kind = "syslog"

    def __init__(self, settings, address):
        super(SyslogWitness, self).__init__(settings)
        self.address = address

    @property
    def name(self):
        return "syslog:%s" % self.address

    def deliver(self, record):
        message = "<%d>%s[%d]: %s%s" % (PRIORITY, IDENT, os.getpid(), MARKER,
                                        json.dumps(record, sort_keys=True, separators=(",", ":")))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.settimeout(5)
            sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            raise WitnessError("cannot send to the syslog socket %s: %s" % (self.address, exc.strerror or exc))
        finally:
            sock.close()

    def read(self):
        journalctl = shutil.which("journalctl")
        if journalctl is None:
            return []
        try:
            # on the controller, also from the recorder's post-run hook: no AnsibleModule, so no run_command
            completed = subprocess.run(  # pylint: disable=ansible-bad-function
                [journalctl, "--quiet", "--no-pager", "--output=cat", "--identifier=" + IDENT, "--lines=%d" % JOURNAL_LINES],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return []
        records = []
        for line in completed.stdout.decode("utf-8", "replace").splitlines():
            record = parse_checkpoint_line(line)
            if record is not None:
                records.append(record)
        return records
