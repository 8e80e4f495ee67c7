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


RECAP_COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")


def play_recap(output):
    """``{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}}`` from Ansible's PLAY RECAP."""
    lines = output.splitlines()
    try:
        start = max(index for index, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    except ValueError:
        raise AssertionError("no PLAY RECAP in the output:\n%s" % output[-3000:])
    recap = {}
    for line in lines[start + 1:]:
        if " : " not in line or "=" not in line:
            if recap:
                break
            continue
        host, counters = line.split(" : ", 1)
        values = dict(pair.split("=", 1) for pair in counters.split())
        recap[host.strip()] = {name: int(values[name]) for name in RECAP_COUNTERS}
    return recap


def recorded_stats(event):
    """The change event's per-host stats in PLAY RECAP's terms (``failures`` is ``failed`` there)."""
    return {host: {name: counts.get("failures" if name == "failed" else name, 0) for name in RECAP_COUNTERS}
            for host, counts in (event.get("stats") or {}).items()}


def recorder_warnings(output):
    """The change_recorder's warnings in ansible's output, one string each (continuation lines joined)."""
    found, current = [], None
    for line in output.splitlines():
        if line.startswith("[WARNING]") or line.startswith("[ERROR]"):
            if current is not None:
                found.append(current)
            current = line if "change_recorder" in line else None
        elif current is not None and line.startswith(" "):
            current += " " + line.strip()
        elif current is not None:
            found.append(current)
            current = None
    if current is not None:
        found.append(current)
    return [text for text in found if text.startswith("[WARNING]")]
