# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend options shared by every module and plugin (see module_utils/config.py)."""

from __future__ import annotations


class ModuleDocFragment(object):
    # For modules (all run on the controller through their action plugins).
    DOCUMENTATION = r"""
options:
  backend:
    description:
      - Which system of record to use.
      - If not set, the value of the E(CHANGEOPS_BACKEND) environment variable, then
        C(backend) in the C([changeops]) section of C(ansible.cfg), then V(sqlite).
      - Set it once for a whole play with C(module_defaults) and the
        C(group/changeops.itsm.itsm) action group.
    type: str
    choices: [sqlite, postgresql]
  sqlite_path:
    description:
      - Path of the SQLite ledger file (created with mode C(0600) when missing).
      - If not set, E(CHANGEOPS_SQLITE_PATH), then C(sqlite_path) in C([changeops]) of
        C(ansible.cfg), then C(~/.ansible/changeops/ledger.sqlite) on the controller.
      - A relative path in C(ansible.cfg) is relative to the folder of that C(ansible.cfg), as Ansible reads
        its own paths, so every run of the project uses one ledger whatever the current directory.
      - A run about to create a new ledger while another one is configured or exists warns, naming both.
    type: path
  busy_timeout:
    description:
      - Seconds to wait for another writer to release the ledger's write lock.
      - If not set, E(CHANGEOPS_BUSY_TIMEOUT), then C(busy_timeout) in C([changeops]), then V(60).
    type: int
  postgresql_dsn:
    description:
      - libpq connection string or URI of the PostgreSQL system of record, for O(backend=postgresql).
      - If not set, E(CHANGEOPS_POSTGRESQL_DSN), then C(postgresql_dsn) in C([changeops]).
        Standard libpq variables (E(PGHOST), E(PGPASSWORD), ...) fill in what the string leaves out.
    type: str
  postgresql_read_dsn:
    description:
      - libpq connection string or URI of a PostgreSQL streaming replica (a hot standby) of O(postgresql_dsn).
        Modules that only read (the C(_info) modules, C(change_register)) and the C(cmdb) inventory read from it;
        every other module reads and writes on the primary, and writes always go to the primary.
      - A reader falls back to the primary, with a warning saying why, when the replica is unreachable, is not a
        standby, has an older schema, or lags more than O(postgresql_read_max_lag) behind.
      - If not set, E(CHANGEOPS_POSTGRESQL_READ_DSN), then C(postgresql_read_dsn) in C([changeops]).
    type: str
  postgresql_read_max_lag:
    description:
      - Seconds a replica may lag behind before readers read from the primary instead. V(0) means only a replica
        that has replayed everything it received.
      - If not set, E(CHANGEOPS_POSTGRESQL_READ_MAX_LAG), then C(postgresql_read_max_lag) in C([changeops]),
        then V(30).
    type: int
notes:
  - Runs on the controller; the system of record is never opened on a managed host, so no
    C(delegate_to) is needed.
"""

    # For callback and inventory plugins, which Ansible configures itself.
    PLUGINS = r"""
options:
  backend:
    description: Which system of record to use.
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
    env:
      - name: CHANGEOPS_BACKEND
    ini:
      - section: changeops
        key: backend
  sqlite_path:
    description:
      - Path of the SQLite ledger file.
      - A relative path in C(ansible.cfg) is relative to the folder of that C(ansible.cfg).
    type: path
    default: ~/.ansible/changeops/ledger.sqlite
    env:
      - name: CHANGEOPS_SQLITE_PATH
    ini:
      - section: changeops
        key: sqlite_path
  busy_timeout:
    description: Seconds to wait for another writer to release the ledger's write lock.
    type: int
    default: 60
    env:
      - name: CHANGEOPS_BUSY_TIMEOUT
    ini:
      - section: changeops
        key: busy_timeout
  postgresql_dsn:
    description: libpq connection string or URI of the PostgreSQL system of record.
    type: str
    env:
      - name: CHANGEOPS_POSTGRESQL_DSN
    ini:
      - section: changeops
        key: postgresql_dsn
  postgresql_read_dsn:
    description:
      - libpq connection string or URI of a PostgreSQL streaming replica of O(postgresql_dsn), for readers.
      - The C(cmdb) inventory reads from it, falling back to the primary (with a warning) when the replica is
        unreachable or lags more than O(postgresql_read_max_lag); the recorder always writes to the primary.
      - The recorder's register refresh after a run reads from it once it has replayed the run's last entry
        (waiting up to 10 seconds, at most O(postgresql_read_max_lag)), else from the primary, with a warning.
    type: str
    env:
      - name: CHANGEOPS_POSTGRESQL_READ_DSN
    ini:
      - section: changeops
        key: postgresql_read_dsn
  postgresql_read_max_lag:
    description: Seconds a replica may lag behind before readers read from the primary instead.
    type: int
    default: 30
    env:
      - name: CHANGEOPS_POSTGRESQL_READ_MAX_LAG
    ini:
      - section: changeops
        key: postgresql_read_max_lag
"""
