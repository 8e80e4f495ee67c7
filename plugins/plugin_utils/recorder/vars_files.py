# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault values of ``vars_files``, each file read once, also when a template names a file per host.

Ansible reads a play's vars_files for every host and task, and its loader keeps only wholly
encrypted files (``cache='vaulted'``): a plain file with inline ``!vault`` values is read and
parsed again each time, and nothing hands the callback those values. The recorder must know them
before the host's task result arrives, so it asks ``VariableManager.get_vars`` what the play's
variables are for the host: that templates the file names exactly as Ansible does. Called on the
playbook's thread, for each host before its first task and again once its facts changed (facts
are what vars_files templates see; registered values and ``include_vars`` are not), that call read
every plain vars file from disk each time.

:class:`VarsFiles` makes that call through a loader that parses each vars file once per path and
modification (``stat`` tells), and collects the vault values of each file when it is read. The
real loader and variable manager are left as they are: the strategy uses them meanwhile.
"""

from __future__ import annotations

import copy
import os

from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vault import collect_vault_secrets


class _VarsFileLoader(object):
    """A ``DataLoader`` for the recorder's own ``get_vars`` calls: vars_files (the ``cache='vaulted'``
    loads) come from :class:`VarsFiles`; everything else goes to the real loader."""

    def __init__(self, loader, files):
        self._loader = loader
        self._files = files

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def load_from_file(self, file_name, cache="all", unsafe=False, json_only=False, trusted_as_template=False):
        if cache != "vaulted":
            return self._loader.load_from_file(file_name, cache=cache, unsafe=unsafe, json_only=json_only,
                                               trusted_as_template=trusted_as_template)
        data = self._files.load(self._loader, file_name, json_only=json_only, trusted_as_template=trusted_as_template)
        return data if unsafe else copy.deepcopy(data)


class VarsFiles(object):
    """Parsed vars files by path and modification, whose vault values go to ``add_secret`` when read."""

    def __init__(self, add_secret):
        self._add_secret = add_secret
        self._files = {}
        self._scanning_for = None
        self._scanning = None
        #: files parsed (a new path, or a path modified since): what a playbook's vars_files cost the recorder
        self.reads = 0

    def load(self, loader, file_name, json_only=False, trusted_as_template=True):
        """The parsed file, read again only when it changed; the real loader's errors pass through."""
        path = loader.path_dwim(file_name)
        try:
            stat = os.stat(path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            stamp = None
        key = (path, bool(json_only), bool(trusted_as_template))
        known = self._files.get(key)
        if stamp is not None and known is not None and known[0] == stamp:
            return known[1]
        data = loader.load_from_file(path, cache="vaulted", unsafe=True, json_only=json_only,
                                     trusted_as_template=trusted_as_template)
        self.reads += 1
        if stamp is not None:
            self._files[key] = (stamp, data)
        collect_vault_secrets(data, self._add_secret)
        return data

    def scan_host(self, variable_manager, play, host):
        """Read (or find already read) the vars_files ``play`` names for ``host``, collecting their vault values."""
        self._scanner(variable_manager, play).get_vars(play=play, host=host, include_hostvars=False)

    def _scanner(self, variable_manager, play):
        if self._scanning_for != (id(variable_manager), id(play)):
            # a shallow copy, made again for each play: it shares every cache (facts, inventory) as they
            # are now, and reads files through this loader
            scanning = copy.copy(variable_manager)
            setattr(scanning, "_loader", _VarsFileLoader(getattr(variable_manager, "_loader"), self))
            self._scanning_for, self._scanning = (id(variable_manager), id(play)), scanning
        return self._scanning
