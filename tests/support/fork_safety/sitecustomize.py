# -*- coding: utf-8 -*-
"""Fork-safety audit of every ansible-playbook/ansible run the integration tests make (see ``Project``).

Loaded by Python at start (``sitecustomize``, from PYTHONPATH) in every process of a test's run when
FORK_SAFETY_AUDIT names a file. It notes each module first imported by a thread other than the main
one while our code (the change_recorder's threads, our callbacks run on Ansible's results thread) is on
that thread's stack. Ansible forks a worker per task from its main thread; a fork while another thread
is halfway through importing a module leaves that module's import lock held for ever in the worker,
which then hangs on its own import of it (seen: the change gate's worker, on ``encodings.ascii``).
``Project.run`` fails the test when the file is not empty.
"""

import os
import sys
import threading

_AUDIT_FILE = os.environ.get("FORK_SAFETY_AUDIT")
_OURS = os.sep + os.path.join("ansible_collections", "changeops", "itsm") + os.sep


def _ours_on_stack():
    frame = sys._getframe(2)
    while frame is not None:
        if _OURS in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _audit(event, args):
    if event != "import" or threading.current_thread() is threading.main_thread():
        return
    # (the event is raised only when a module is loaded, never for one sys.modules holds already)
    name = args[0]
    if not _ours_on_stack():
        return
    # the stack by hand: importing traceback here would be one more import on this thread
    stack, frame = [], sys._getframe(1)
    while frame is not None and len(stack) < 15:
        stack.append("  %s:%d in %s" % (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    finding = "pid %d (%s), thread %s imported %s:\n%s\n\n" % (
        os.getpid(), " ".join(os.path.basename(arg) for arg in sys.argv[:2]), threading.current_thread().name,
        name, "\n".join(stack))
    with open(_AUDIT_FILE, "ab") as handle:
        handle.write(finding.encode("utf-8", "backslashreplace"))


if _AUDIT_FILE:
    sys.addaudithook(_audit)
