# -*- coding: utf-8 -*-
"""PostgreSQL point-in-time recovery of the system of record, done as docs/operations.md says, step by step.

A real primary (Debian's server binaries, a throwaway cluster on loopback) archives its WAL with
``archive_command`` into a local directory; a base backup is taken with ``pg_basebackup``; two runs are recorded
with a moment (a server time, and an LSN) noted between them; a checkpoint of the second run's head is signed to a
witness; the WAL is switched and archived. Then the base backup is restored into a fresh data directory, the
recovery settings of the docs are written, ``recovery.signal`` is created and the server is started on another
port. After recovery:

* the ledger verifies (``ledger_verify``: chain and query tables) and ends exactly at the first run's last entry;
* against the witness that saw the second run, ``ledger_verify`` reports the rollback (``history_mismatch:
  truncated``), and once recorders write to the recovered server, as ``rewritten``: never accepted silently;
* the recovered server was promoted (``recovery_target_action``), so recorders can write to it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from support.history import record_run

pytestmark = pytest.mark.backends("postgresql")

#: generous: on a loaded machine a restart with recovery can take a while; nothing here is timed
RECOVERY_TIMEOUT = 180


def _own(server, path):
    """Directories the server writes must belong to its user (postgres when the tests run as root)."""
    if server._as_postgres:  # pylint: disable=protected-access
        account = pwd.getpwnam("postgres")
        os.chown(path, account.pw_uid, account.pw_gid)


def _append_settings(data_dir, settings):
    """Lines added to the cluster's postgresql.conf, as an administrator edits it."""
    with open(os.path.join(data_dir, "postgresql.conf"), "a") as handle:
        handle.write("\n# added as docs/operations.md says (point-in-time recovery)\n")
        for name, value in settings:
            handle.write("%s = '%s'\n" % (name, value))


def _connect(dsn):
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="module")
def archived_history(tmp_path_factory):
    """A primary that archives its WAL, a base backup, and two recorded runs with the moment between them."""
    from support import postgresql_server

    if postgresql_server.find_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    primary = postgresql_server.LocalServer()
    try:
        wal_archive = os.path.join(primary.root, "wal-archive")
        os.mkdir(wal_archive, 0o700)
        _own(primary, wal_archive)
        # docs/operations.md, "Point-in-time recovery", step 1: continuous archiving on the server
        _append_settings(primary.data_dir, [
            ("wal_level", "replica"),
            ("archive_mode", "on"),
            ("archive_command", "test ! -f %s/%%f && cp %%p %s/%%f" % (wal_archive, wal_archive)),
            ("archive_timeout", "60"),
        ])
        primary.start()
        name = postgresql_server.create_database(primary, prefix="changeops_pitr")
        config = {"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}
        open_system_of_record(config).close()  # the schema, before the base backup

        # step 2: a base backup
        base_backup = os.path.join(primary.root, "base-backup")
        primary._run("pg_basebackup", "-D", base_backup, "-X", "stream", "-c", "fast",  # pylint: disable=protected-access
                     "-d", primary.dsn("postgres"))

        keys = tmp_path_factory.mktemp("pitr-keys")
        witness = {"checkpoint_key": str(keys / "checkpoint.key"), "witness_file": str(keys / "witness.jsonl"),
                   "witness_syslog": "false"}
        checkpoints.generate_key(witness["checkpoint_key"])

        with open_system_of_record(config) as writer:
            first = record_run(writer, "before-the-target")
            with _connect(primary.dsn(name)) as conn:
                target_time, target_lsn = conn.execute("SELECT clock_timestamp(), pg_current_wal_lsn()").fetchone()
            # the second run commits after the moment noted (both on the server's clock; the pause only keeps
            # them apart by more than the clock's resolution, nothing is timed)
            time.sleep(0.2)
            second = record_run(writer, "after-the-target")
            signed = operation(checkpoints.checkpoint_ledger, checkpoints.LEDGER_CHECKPOINT_SPEC, config, **witness)
            assert signed["changed"], signed
        with _connect(primary.dsn(name)) as conn:
            # the segment holding the second run goes to the archive now, not at archive_timeout
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        _wait_for(lambda: os.path.exists(os.path.join(wal_archive, segment)),
                  "WAL segment %s archived by archive_command" % segment, primary)
        yield {"primary": primary, "name": name, "base_backup": base_backup, "wal_archive": wal_archive,
               "first": first, "second": second, "target_time": target_time, "target_lsn": str(target_lsn),
               "witness": witness}
    finally:
        primary.remove()


def operation(function, spec, config, **params):
    values = {name: option.get("default") for name, option in spec.items()}
    values.update(params)
    with open_system_of_record(dict(config)) as sor:
        return function(OperationContext(sor, values, actor="ops@ctl"))


def ledger_verify(config, **params):
    values = {name: option.get("default") for name, option in LEDGER_VERIFY_SPEC.items()}
    values.update(fail_on_broken=False, check_projections=True, **params)
    with open_system_of_record(dict(config)) as sor:
        return verify_ledger(OperationContext(sor, values, actor="auditor@ctl"))["verification"]


def _wait_for(condition, what, server, timeout=RECOVERY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("%s did not happen within %d s; server log:\n%s" % (what, timeout, server.log_tail()))
        time.sleep(0.2)


def recover(history, target):
    """docs/operations.md step 3: restore the base backup into a fresh data directory, write the recovery settings,
    create recovery.signal, start the server on another port; returns the server once recovery has ended."""
    from support import postgresql_server

    primary = history["primary"]

    class RecoveredServer(postgresql_server.LocalServer):
        def _initdb(self):
            self.password = primary.password  # the base backup holds the primary's roles
            # restore = copy the base backup's files (as the server's user: the copy must belong to it)
            argv = ["cp", "-a", history["base_backup"], self.data_dir]
            if self._as_postgres:
                argv = ["runuser", "-u", "postgres", "--"] + argv
            subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)

    server = RecoveredServer(bin_dir=primary.bin_dir)
    own_archive = os.path.join(server.root, "wal-archive")
    os.mkdir(own_archive, 0o700)
    _own(server, own_archive)
    _append_settings(server.data_dir, [
        ("restore_command", "cp %s/%%f %%p" % history["wal_archive"]),
        target,
        ("recovery_target_timeline", "current"),
        ("recovery_target_action", "promote"),
        # the recovered server's own WAL (a new timeline) goes to an archive of its own while it is checked
        ("archive_command", "test ! -f %s/%%f && cp %%p %s/%%f" % (own_archive, own_archive)),
    ])
    signal = os.path.join(server.data_dir, "recovery.signal")
    open(signal, "w").close()
    _own(server, signal)
    try:
        server.start()

        def promoted():
            try:
                with _connect(server.dsn("postgres")) as conn:
                    return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            except Exception:  # pylint: disable=broad-except
                return False
        _wait_for(promoted, "the end of recovery (promotion)", server)
    except BaseException:
        server.remove()
        raise
    return server


@pytest.mark.parametrize("target_kind", ["recovery_target_time", "recovery_target_lsn"])
def test_point_in_time_recovery_as_documented_ends_at_the_target_verifies_and_reports_the_rollback(
        archived_history, target_kind):
    history = archived_history
    if target_kind == "recovery_target_time":
        target = (target_kind, history["target_time"].isoformat())
    else:
        target = (target_kind, history["target_lsn"])
    server = recover(history, target)
    try:
        config = {"backend": "postgresql", "postgresql_dsn": server.dsn(history["name"])}
        first_head, second_head = history["first"][-1], history["second"][-1]

        # the record ends at the target: the first run whole, nothing of the second
        with open_system_of_record(config) as sor:
            assert sor.head() == (first_head.seq, first_head.hash)
            runs = {event["run_id"] for event in sor.find_change_events(limit=100)}
            assert runs == {"before-the-target"}, runs

        # ledger_verify passes on the recovered ledger (chain, payloads, query tables against a replay)...
        alone = ledger_verify(config, witness_file=os.path.join(server.root, "own-witness.jsonl"),
                              witness_syslog="false")
        assert alone["valid"], alone
        assert (alone["head_seq"], alone["head_hash"]) == (first_head.seq, first_head.hash)
        assert alone["projections_checked"], alone

        # ...and against the witness that saw the second run, the recovery is a rollback, reported
        verification = ledger_verify(config, **history["witness"])
        assert not verification["valid"], verification
        mismatch = verification["history_mismatch"]
        assert mismatch["problem"] == "truncated", verification
        assert mismatch["seq"] >= second_head.seq > first_head.seq

        # promoted (recovery_target_action): recorders write to it again, and that does not hide the rollback
        with open_system_of_record(config) as writer:
            record_run(writer, "after-the-recovery")
        verification = ledger_verify(config, **history["witness"])
        assert not verification["valid"]
        assert verification["history_mismatch"]["problem"] == "rewritten", verification
    finally:
        if os.environ.get("CHANGEOPS_TEST_KEEP_PITR"):
            print("kept recovered cluster", server.root)
        else:
            server.remove()
            shutil.rmtree(server.root, ignore_errors=True)
