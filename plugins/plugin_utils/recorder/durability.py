# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``on_record_failure``: what a run does when its record cannot be kept.

In the spirit of auditd's ``disk_full_action``/``disk_error_action``:

``warn`` (the default)
    The run goes on. Entries that neither the system of record nor any spool location takes are held
    in memory and retried; whatever is still held when the run ends is lost, and the recorder says
    so at the end of the run (how many, of which run) and leaves a marker for the next run.
``fail``
    No record, no change. Before each task starts, the recorder waits until every entry so far is
    durable (in the ledger or in a spool file); when it is not, the run stops before the task starts
    on any host, and exits with status 1. A run whose end cannot be kept also exits with status 1.
anything else
    The run stops before its first task, saying why: a typo in a record policy never leaves a run
    unrecorded. (With ``choices`` in the option's documentation, Ansible would only skip loading the
    callback, and the run would go on unrecorded.)

How the run is stopped: ``SystemExit`` raised from ``v2_playbook_on_task_start`` (or the handler
variant). The strategies (linear and free) send that callback on the controller's main thread right
before they queue the task for its first host, and ansible-core lets ``SystemExit`` through:
``TaskQueueManager.send_callback`` turns an ``Exception`` raised by a callback into a warning (its
``_CALLBACK_DISPATCH_ERROR_BEHAVIOR`` defaults to ``warning``), and ``TaskQueueManager.terminate()``
is only looked at before the callback is sent, so the first host would still get the task. A
``SystemExit`` unwinds through the strategy's and the task queue manager's ``finally`` blocks (the
workers are cleaned up) and the CLI exits with its status, the same way ansible-core's own task
debugger ends a run on ``quit`` (``sys.exit(99)`` in ``StrategyBase``).
"""

from __future__ import annotations

ON_RECORD_FAILURE = ("warn", "fail")

#: exit status of a run stopped because its record could not be kept (Ansible's generic error)
EXIT_STATUS = 1

PREFIX = "changeops.itsm.change_recorder: "


class RecordStopped(SystemExit):
    """Raised to stop the run; a ``SystemExit`` so that ansible-core lets it end the run (see above)."""


class RecordGuard(object):
    """Applies ``on_record_failure`` for one run.

    ``writer``: the run's ``RecorderWriter``; ``timeout``: longest wait for the record to become durable
    before a task (``flush_timeout``).
    """

    def __init__(self, writer, mode, timeout, display):
        self.writer = writer
        # unset (an empty variable) is the default
        self.mode = str(mode or "").strip().lower() or "warn"
        #: a value that is neither warn nor fail: the run is not left unrecorded on a typo, it does not start
        self.invalid = None if self.mode in ON_RECORD_FAILURE else mode
        self.timeout = max(1.0, float(timeout))
        self.display = display
        #: why the run was stopped (recorded as the reason of its ``run.interrupted``), or None
        self.stopped = None

    @property
    def strict(self):
        return self.mode == "fail" or self.invalid is not None

    def before_task(self, task_name):
        """With ``fail``: return when the record so far is durable, else stop the run (``RecordStopped``)."""
        if not self.strict or self.stopped is not None:
            return
        if self.invalid is not None:
            failure = ("on_record_failure is %r, which is neither warn nor fail; a run whose record policy cannot be"
                       " told is not started (set CHANGEOPS_ON_RECORD_FAILURE or on_record_failure in ansible.cfg"
                       " to warn or fail)" % (self.invalid,))
        else:
            failure = self.writer.wait_durable(self.timeout)
        if failure is None:
            return
        if self.invalid is not None:
            self.stopped = "stopped before task '%s': %s" % (task_name, failure)
        else:
            self.stopped = ("stopped before task '%s' because on_record_failure is fail and the record of this run"
                            " cannot be kept: %s" % (task_name, failure))
        self.display.error(PREFIX + "run %s %s. No host has started this task." % (self.writer.run_id, self.stopped))
        raise RecordStopped(EXIT_STATUS)

    def after_run(self):
        """With ``fail``: a run whose record could not be kept to its end fails (``RecordStopped``)."""
        if self.mode != "fail" or not self.writer.lost:
            return
        lost = ", ".join("%d of run %s" % (count, run_id) for run_id, count in sorted(self.writer.lost.items()))
        self.display.error(PREFIX + "on_record_failure is fail and entries of this run's record were lost (%s):"
                                    " the run fails" % lost)
        raise RecordStopped(EXIT_STATUS)
