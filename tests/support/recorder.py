"""Test helpers for the change_recorder: what a run linked, which run is new, what was displayed."""

from __future__ import annotations


def links_of(sor, run_id):
    """(host, ci_id) pairs of the ``ci.changed_by_run`` entries of ``run_id``, sorted."""
    return sorted((entry.data["host"], entry.data["ci_id"]) for entry in sor.iter_entries(kinds=["ci.changed_by_run"])
                  if entry.data["run_id"] == run_id)


def new_run_id(sor, seen):
    """The run id of the one change event not in ``seen`` (added to it)."""
    [event] = [event for event in sor.find_change_events() if event["run_id"] not in seen]
    seen.add(event["run_id"])
    return event["run_id"]


class RecordingDisplay(object):
    """Stands in for Ansible's Display: keeps warnings and verbose messages for assertions."""

    def __init__(self):
        self.warnings = []
        self.messages = []
        self.errors = []

    def warning(self, message):
        self.warnings.append(message)

    def error(self, message):
        self.errors.append(message)

    def vv(self, message):
        self.messages.append(message)

    display = vv
