# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hook: regenerate the change register after each recorded run (option register_path).

The hook runs in the recorder's writer thread inside the run's final step,
which the playbook waits for at most ``flush_timeout`` seconds; past that the
process exits and kills the writer wherever it is. A refresh of a very large
ledger (full chain check, projection replay, a 40 MB page) can take longer, so
it gets its own budget, ``register_refresh_timeout``: the generation runs in a
thread of its own, on its own connection, and when the budget is spent the hook
gives up, says so in one warning and returns, leaving the published register
as it was. The given-up generation may not write any more (the write guard),
and a write already under way is waited for, so no half-written temporary
file is left behind; one left by a process killed outright is removed by the
next generation (``change_register.remove_stale_temporaries``).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import generate_register
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.hooks import register_post_run_hook
from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer

PREFIX = "changeops.itsm.change_recorder"
DEFAULT_TIMEOUT = 30.0
#: share of flush_timeout the refresh may use: the final flush, CMDB links and other hooks need the rest
FLUSH_TIMEOUT_SHARE = 0.75
#: how long giving up waits for a write already under way (writing takes well under a second)
WRITE_GRACE_SECONDS = 10.0


def _truthy(value, default=True):
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _seconds(value, default):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def refresh_budget(options):
    """Seconds the refresh may take: ``register_refresh_timeout``, within the writer's ``flush_timeout``."""
    budget = _seconds(options.get("register_refresh_timeout"), DEFAULT_TIMEOUT)
    flush_timeout = _seconds(options.get("flush_timeout"), None)
    if flush_timeout is not None:
        budget = min(budget, flush_timeout * FLUSH_TIMEOUT_SHARE)
    return budget


class RefreshAbandoned(ChangeopsError):
    """The refresh ran out of time; it must not write any more."""


class Refresh(object):
    """One register generation in a thread of its own, which may be given up on."""

    def __init__(self, config, params, opener=open_system_of_record, renderer_factory=RegisterRenderer):
        self.config = dict(config)
        self.params = dict(params)
        self._opener = opener
        self._renderer_factory = renderer_factory
        self.result = None
        self.error = None
        self.error_message = None
        self.done = threading.Event()
        self.abandoned = False
        self._write_lock = threading.Lock()

    def run(self):
        try:
            # its own connection: the writer closes the one it lent the hook as soon as the hook returns
            with self._opener(self.config) as sor:
                self.result = generate_register(sor, self.params, self._renderer_factory(),
                                                write_guard=self._writing)
        except ChangeopsError as exc:
            self.error, self.error_message = exc, exc.message
        except Exception as exc:  # pylint: disable=broad-except
            self.error, self.error_message = exc, "%s: %s" % (type(exc).__name__, exc)
        finally:
            self.done.set()

    @contextlib.contextmanager
    def _writing(self):
        with self._write_lock:
            if self.abandoned:
                raise RefreshAbandoned("the refresh was given up on before it wrote the register")
            yield

    def start(self):
        thread = threading.Thread(target=self.run, name="changeops-register-refresh", daemon=True)
        thread.start()
        return thread

    def abandon(self, grace=WRITE_GRACE_SECONDS):
        """Stop the generation from writing. False when it finished after all (the result stands).

        A write under way is waited for (up to ``grace`` seconds), so the files
        are either replaced whole or left as they were.
        """
        acquired = self._write_lock.acquire(timeout=grace)
        try:
            if self.done.is_set():
                return False
            self.abandoned = True
            return True
        finally:
            if acquired:
                self._write_lock.release()


def _abandon_at_exit(refresh, display, run_id, path):
    # the run's flush_timeout ran out while the refresh was still going: the process is exiting
    if not refresh.done.is_set() and refresh.abandon():
        display.warning("%s: change register %s not refreshed after run %s: the run ended (flush_timeout) before "
                        "the refresh finished" % (PREFIX, path, run_id))


@register_post_run_hook
def refresh_change_register(sor, run_id, options, display):
    path = options.get("register_path")
    if not path:
        return
    params = {
        "path": path,
        "json_path": options.get("register_json_path") or None,
        "title": options.get("register_title") or "Change register",
        "verify_chain": _truthy(options.get("register_verify_chain")),
        "check_projections": _truthy(options.get("register_check_projections"), default=False),
    }
    budget = refresh_budget(options)
    config = dict(sor.config)
    if config.get("postgresql_read_dsn"):
        # read from the replica (postgresql_read_dsn) like the change_register module, but only once it has
        # replayed this run's last entry: the register must show the run it is refreshed for
        config.update(reader=True, read_min_seq=sor.head()[0])
    refresh = Refresh(config, params)
    started = time.monotonic()
    atexit.register(_abandon_at_exit, refresh, display, run_id, path)
    try:
        refresh.start()
        finished = refresh.done.wait(budget) or not refresh.abandon()
    finally:
        atexit.unregister(_abandon_at_exit)
    if not finished:
        display.warning(
            "%s: change register %s not refreshed after run %s: gave up after %.0f s (register_refresh_timeout); "
            "it still shows the ledger as of an earlier refresh. Generate it with the changeops.itsm.change_register "
            "playbook or module, or raise register_refresh_timeout (and flush_timeout), or turn off "
            "register_check_projections / register_verify_chain for the per-run refresh"
            % (PREFIX, path, run_id, time.monotonic() - started))
        return
    if refresh.error is not None:
        display.warning("%s: change register not refreshed after run %s: %s" % (PREFIX, run_id, refresh.error_message))
        return
    read_from = refresh.result.get("read_from") or {}
    if read_from.get("reason"):
        display.warning("%s: change register refreshed after run %s, %s" % (PREFIX, run_id, read_from["reason"]))
    if refresh.result["changed"]:
        display.vv("%s: %s (%.1f s)" % (PREFIX, refresh.result["msg"], time.monotonic() - started))
