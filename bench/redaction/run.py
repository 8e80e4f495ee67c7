# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What do the redaction detectors cost per recorded result, on the playbook's (callback) thread?

    .venv/bin/python bench/redaction/run.py                # 20,000 results per case, 5 rounds
    .venv/bin/python bench/redaction/run.py --results 2000 --rounds 3     # a quick look

The recorder summarises every task result on the callback thread: ``summary.summarise_result`` and, in
diff mode, ``summarise_diff``, both of which run the whole redaction catalogue. This script times that
summary for results shaped like ``bench/recorder_overhead``'s twenty tasks (ping, debug, command, shell,
stat, a loop item, a skipped task, file, a no_log copy) and for two heavier ones (a 2,000-character
``stdout``, a 5 KB config file's diff), in the same process, against a baseline:

* ``keep-only``    the summary with a redactor that detects nothing (copying the kept keys, truncation):
                   what the recorder would cost without redaction;
* ``catalogue``    the full catalogue with the run's known secrets (0, 20 or 200 values, each in all its
                   forms: vault plaintexts, extra vars);
* ``previous``     the redactor before the catalogue (``plugins/module_utils/redact.py`` at ``--previous``,
                   read with git; default: the commit this work started from), with the same known secrets.

It prints microseconds per result for each and the detectors' own cost (``catalogue - keep-only``).
To judge the overhead budget, compare that cost with the wall time per result of the benchmark playbook:
``bench/recorder_overhead`` at 200 hosts took 306 s without a recorder for 4,600 results on 2026-12-01,
66 ms per result, so 1 % of the run is 0.66 ms of callback time per result (the recorder's callback runs
while workers run tasks, so its cost only adds to the wall time where the controller is the bottleneck).
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, ".build", "collections"))

from ansible_collections.changeops.itsm.plugins.module_utils.redaction import Redactor  # noqa: E402
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import summary  # noqa: E402

MS_PER_RESULT_200_HOSTS = 306.3 * 1000 / 4600
#: the commit the detector catalogue started from: its redact.py is the "previous" redactor
PREVIOUS_REF = "db415c6"


def previous_redactor_class(ref):
    """``Redactor`` of ``plugins/module_utils/redact.py`` at git ``ref``, or None when git cannot read it."""
    try:
        source = subprocess.run(["git", "show", "%s:plugins/module_utils/redact.py" % ref], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    namespace = {"__name__": "previous_redact"}
    exec(compile(source, "redact.py@%s" % ref, "exec"), namespace)  # pylint: disable=exec-used
    return namespace["Redactor"]


def light_results(host="host-042"):
    """One result per task of bench/recorder_overhead's playbook, as Ansible hands them to callbacks."""
    command = {"changed": True, "cmd": ["/bin/true"], "rc": 0, "stdout": "", "stderr": "", "msg": "",
               "start": "2026-12-01 10:00:00.123456", "end": "2026-12-01 10:00:00.125678", "delta": "0:00:00.002222"}
    return [
        {"changed": False, "ping": "pong"},
        {"changed": False, "msg": "hello from %s" % host},
        {"changed": False, "ansible_facts": {"bench_fact": host.upper()}},
        command,
        dict(command, changed=False),
        {"changed": False, "stat": {"exists": True, "path": "/", "mode": "0755", "isdir": True}},
        {"changed": False, "msg": "All assertions passed", "_ansible_verbose_always": True},
        {"changed": False, "msg": "item one", "item": "one", "_ansible_item_label": "one"},
        {"changed": False, "skip_reason": "Conditional result was False", "false_condition": "false"},
        {"changed": False, "cmd": "echo \"%s\"" % host, "rc": 0, "stdout": host, "stderr": "",
         "start": "2026-12-01 10:00:00.1", "end": "2026-12-01 10:00:00.2", "delta": "0:00:00.01"},
        {"changed": True, "path": "/tmp/out/%s" % host, "mode": "0700", "owner": "root", "group": "root",
         "state": "directory", "uid": 0, "gid": 0, "size": 4096},
        {"censored": "the output has been hidden because no_log was set for this result", "changed": True},
        {"changed": False, "bench_other": 42},
        {"changed": False, "content": "dG9rZW49bm90LWEtcmVhbC1zZWNyZXQK", "encoding": "base64",
         "source": "/tmp/out/%s/config" % host},
    ]


def heavy_results():
    stdout = "\n".join("Get:%d http://deb.debian.org/debian bookworm/main amd64 package-%d 1.%d-2 [%d kB]"
                       % (i, i, i, 10 * i) for i in range(30))[:2000]
    config = "\n".join("option_%03d = value-%d  # a comment about option %d" % (i, i * 7, i) for i in range(110))[:5000]
    return [
        {"changed": True, "cmd": "apt-get install -y nginx", "rc": 0, "stdout": stdout, "stderr": "", "msg": ""},
        {"changed": True, "path": "/etc/app.conf",
         "diff": [{"before_header": "/etc/app.conf", "after_header": "/etc/app.conf", "before": config,
                   "after": config + "\nnew = 1\n"}]},
    ]


class KeepOnly(Redactor):
    """The recorder's summary without detection: what is left is copying and truncation."""

    def redact(self, value, findings=None, path=()):
        return value

    def redact_string(self, text, findings=None, path=()):
        return text


def per_result_us(redactor, results, count, rounds):
    timings = []
    for _round in range(rounds):
        started = time.perf_counter()
        done = 0
        while done < count:
            for raw in results:
                summary.summarise_result(raw, redactor, 2000)
                if "diff" in raw:
                    summary.summarise_diff(raw, redactor, 20000)
                done += 1
        timings.append((time.perf_counter() - started) / done * 1e6)
    return statistics.median(timings)


def catalogue_redactor(known, factory=Redactor):
    redactor = factory()
    for index in range(known):
        redactor.add_known_secret("vault-value-%04d-%s" % (index, "Zq9x" * (1 + index % 4)))
    return redactor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--results", type=int, default=20000, help="results summarised per case and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median counts")
    parser.add_argument("--previous", default=PREVIOUS_REF, help="git ref of the previous redactor (default %(default)s)")
    args = parser.parse_args(argv)
    previous = previous_redactor_class(args.previous)
    cases = [("bench playbook's tasks", light_results()), ("2,000-char stdout and 5 KB diff", heavy_results())]
    print("per-result cost of the recorder's summary on the callback thread (median of %d rounds of %d results)"
          % (args.rounds, args.results))
    print("%-34s %-22s %12s %14s %16s" % ("results", "redactor", "us/result", "detectors us", "% of 66 ms/result"))
    for label, results in cases:
        baseline = per_result_us(KeepOnly(), results, args.results, args.rounds)
        print("%-34s %-22s %12.1f %14s %16s" % (label, "keep-only (baseline)", baseline, "-", "-"))
        variants = [("catalogue, %d known" % known, Redactor, known) for known in (0, 20, 200)]
        if previous is not None:
            variants += [("previous, %d known" % known, previous, known) for known in (20, 200)]
        for name, factory, known in variants:
            cost = per_result_us(catalogue_redactor(known, factory), results, args.results, args.rounds)
            added = cost - baseline
            print("%-34s %-22s %12.1f %14.1f %15.3f%%" % (
                label, name, cost, added, added / (MS_PER_RESULT_200_HOSTS * 10)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
