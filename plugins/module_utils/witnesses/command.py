# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command hook witness: any program that ships a checkpoint elsewhere (option ``witness_command``).

The command line is split like a shell would (no shell runs it) and started once per checkpoint
with the checkpoint's JSON on standard input, one line. Exit status 0 means taken; anything else,
or no exit within ``TIMEOUT`` seconds, means "offer it again next time". Its output is not
recorded. Examples: ``logger -t changeops-ledger`` to another syslog, a script that posts to an
object store with retention lock, or to a ticketing system.
"""

from __future__ import annotations

import json
import shlex
import subprocess

from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import (
    Witness,
    WitnessError,
    register_witness_type,
)

TIMEOUT = 10


@register_witness_type
def _configured(settings):
    command = settings.get("witness_command")
    return CommandWitness(settings, command) if command else None


class CommandWitness(Witness):
    kind = "command"

    def __init__(self, settings, command):
        super(CommandWitness, self).__init__(settings)
        self.command = command
        self.argv = shlex.split(command)

    @property
    def name(self):
        return "command:%s" % self.argv[0]

    def deliver(self, record):
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        try:
            # Witnesses run on the controller, also from the recorder's post-run hook, where there is no
            # AnsibleModule and so no run_command: subprocess is the one way both callers share.
            completed = subprocess.run(  # pylint: disable=ansible-bad-function
                self.argv, input=line.encode("utf-8"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise WitnessError("%s did not finish within %d s" % (self.argv[0], TIMEOUT))
        except OSError as exc:
            raise WitnessError("cannot run %s: %s" % (self.argv[0], exc.strerror or exc))
        if completed.returncode != 0:
            detail = completed.stderr.decode("utf-8", "replace").strip().splitlines()
            raise WitnessError("%s exited %d%s" % (self.argv[0], completed.returncode,
                                                   (": " + detail[-1][:200]) if detail else ""))
