# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only connection into a booted systemd-nspawn instance (molecule targets).

Why not community.general.chroot: that collection is not a dependency of changeops.itsm and comes
only with the 473 MB ``ansible`` wheel. This plugin is the part of it the tests need: every
command goes through ``tests/molecule/chroot-exe ROOT_DIR ...`` (nsenter into the instance's
namespaces), files are streamed with ``dd`` through the same wrapper, so nothing is ever written
through the host's view of the root directory (absolute symlinks inside it would point at the host).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: nsenter_chroot
short_description: Run tasks inside a booted systemd-nspawn instance through nsenter
description:
  - Test infrastructure of changeops.itsm molecule scenarios; not part of the collection.
author: changeops.itsm maintainers
options:
  remote_addr:
    description: Root directory of the instance (its nspawn.pid file sits next to it).
    default: inventory_hostname
    vars:
      - name: ansible_host
  chroot_exe:
    description: The nsenter wrapper.
    default: chroot-exe
    vars:
      - name: ansible_chroot_exe
"""

import os
import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.connection import ConnectionBase

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_EXE = os.path.normpath(os.path.join(HERE, "..", "..", "chroot-exe"))
BUFSIZE = 65536


class Connection(ConnectionBase):
    transport = "nsenter_chroot"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def _exe(self):
        exe = self.get_option("chroot_exe")
        return DEFAULT_EXE if exe in (None, "", "chroot-exe") else exe

    def _root(self):
        return self.get_option("remote_addr")

    def _connect(self):
        root = self._root()
        if not os.path.isdir(root):
            raise AnsibleConnectionFailure("nsenter_chroot: %s is not a directory (instance not created?)" % root)
        self._connected = True
        return self

    def _run(self, argv, in_data=None, stdin=None):
        cmd = [self._exe(), self._root()] + argv
        self._display.vvv("EXEC %s" % " ".join(shlex.quote(a) for a in cmd), host=self._root())
        proc = subprocess.Popen(cmd, stdin=stdin if stdin is not None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = proc.communicate(in_data if stdin is None else None)
        if proc.returncode == 125:
            raise AnsibleConnectionFailure(stderr.decode("utf-8", "replace").strip())
        return proc.returncode, stdout, stderr

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._run(["/bin/sh", "-c", cmd], in_data=to_bytes(in_data) if in_data else b"")

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            rc, _out, err = self._run(["dd", "of=%s" % out_path, "bs=%d" % BUFSIZE, "status=none"], stdin=source)
        if rc != 0:
            raise AnsibleError("nsenter_chroot: put %s -> %s failed: %s" % (in_path, out_path, err.decode("utf-8", "replace")))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        rc, out, err = self._run(["dd", "if=%s" % in_path, "bs=%d" % BUFSIZE, "status=none"], in_data=b"")
        if rc != 0:
            raise AnsibleError("nsenter_chroot: fetch %s failed: %s" % (in_path, err.decode("utf-8", "replace")))
        with open(out_path, "wb") as target:
            target.write(out)

    def close(self):
        self._connected = False
