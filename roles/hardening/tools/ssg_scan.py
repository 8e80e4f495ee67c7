# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scan a target's root file system with OpenSCAP and Debian's SCAP Security Guide content, as an auditor would,
and compare the scanner's verdicts with the hardening role's evidence.

    python3 roles/hardening/tools/ssg_scan.py --root /path/to/rootfs --evidence host.json --out DIR --label after [--agreement]

Runs ``oscap-chroot ROOT xccdf eval`` once per profile of the content (standard and the ANSSI ones) and once
with a tailoring that selects every SSG rule the mapping ties to a catalogue control, with the rules' values set
to the policy the evidence records (``ssg.values``). Writes the XCCDF results (gzipped: each holds the whole
benchmark, 3.6 MB) and LABEL-summary.json to DIR and prints pass/fail counts per profile. With ``--agreement`` it
exits 1 when a mapped control and its rules disagree
(the role's evidence says pass and the scanner fail, or the reverse): fix the role, not the mapping.

Needs openscap-scanner, openscap-utils (oscap-chroot) and ssg-debian (Debian packages) and root. The newest data
stream ssg-debian 0.1.65 ships is Debian 11's; on Debian 12 and 13 its platform check is widened (see
plugins/plugin_utils/hardening/scanner.py), nothing else about the content changes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CONTENT = "/usr/share/xml/scap/ssg/content"


def _import_scanner():
    for path in (os.environ.get("ANSIBLE_COLLECTIONS_PATH") or "").split(os.pathsep) + [
            os.path.join(REPO, ".build", "collections"), os.path.dirname(os.path.dirname(os.path.dirname(REPO)))]:
        if path and os.path.isdir(os.path.join(path, "ansible_collections", "changeops", "itsm")):
            sys.path.insert(0, path)
            break
    from ansible_collections.changeops.itsm.plugins.plugin_utils.hardening import scanner
    return scanner


def load_mapping():
    import yaml
    with open(os.path.join(os.path.dirname(HERE), "vars", "ssg_mapping.yml")) as handle:
        return yaml.safe_load(handle)["__hardening_ssg"]


# oscap's dpkginfo probe reads the apt configuration of the machine it runs on; a docker image's
# (Dir::Cache::pkgcache "") makes it fail on every package rule under oscap-chroot. The scan reads none of it.
NEUTRAL_APT_CONFIG = 'Dir::Etc::parts "/nonexistent-changeops-ssg-scan";\nDir::Etc::main "/dev/null";\n'


def oscap(root, datastream, results, profile=None, tailoring=None, apt_config=None):
    argv = ["oscap-chroot", root, "xccdf", "eval", "--results", results]
    if tailoring:
        argv += ["--tailoring-file", tailoring]
    argv += ["--profile", profile, datastream]
    started = time.time()
    env = dict(os.environ, APT_CONFIG=apt_config) if apt_config else None
    completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                               check=False, env=env)
    if "dpkginfo_init has failed" in completed.stderr:
        raise SystemExit("ssg_scan: oscap's dpkginfo probe failed on %s: the package rules would be wrong" % root)
    # 0: all selected rules passed, 2: some failed; anything else is the scanner failing
    if completed.returncode not in (0, 2):
        raise SystemExit("ssg_scan: %s failed (exit %d): %s" % (" ".join(argv), completed.returncode,
                                                                completed.stderr.strip()[-2000:]))
    return time.time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--root", required=True, help="root file system of the target")
    parser.add_argument("--evidence", required=True, help="the role's evidence document of that target")
    parser.add_argument("--out", required=True, help="directory for results and the summary")
    parser.add_argument("--label", required=True, help="before or after (file names and the printout)")
    parser.add_argument("--agreement", action="store_true", help="exit 1 when a mapped control and its rules disagree")
    parser.add_argument("--content", default=CONTENT, help="directory of the ssg-debian data streams")
    args = parser.parse_args(argv)
    scanner = _import_scanner()
    mapping = load_mapping()
    with open(args.evidence) as handle:
        document = json.load(handle)
    os.makedirs(args.out, exist_ok=True)
    content = mapping["content"]
    with open(os.path.join(args.content, content["datastream"])) as handle:
        datastream_text = handle.read()
    # the adapted data stream and the apt configuration are derived inputs: a scratch directory, not artifacts
    scratch = tempfile.mkdtemp(prefix="ssg_scan-")
    try:
        datastream = os.path.join(scratch, "adapted-" + content["datastream"])
        with open(datastream, "w") as handle:
            handle.write(scanner.adapted_datastream(datastream_text))
        apt_config = os.path.join(scratch, "neutral-apt.conf")
        with open(apt_config, "w") as handle:
            handle.write(NEUTRAL_APT_CONFIG)
        values = (document.get("ssg") or {}).get("values") or {}
        tailoring = os.path.join(args.out, "%s-tailoring.xml" % args.label)
        with open(tailoring, "w") as handle:
            handle.write(scanner.tailoring(mapping, values, datastream, document.get("generated_at", "")))
        summary = {"host": document["host"], "label": args.label, "content": content, "profiles": {}, "seconds": {}}
        runs = [(p, mapping["profile_prefix"] + p, None) for p in content["profiles"]]
        runs.append(("changeops-mapped", scanner.TAILORING_PROFILE, tailoring))
        mapped_results = {}
        for name, profile, tailoring_file in runs:
            results = os.path.join(scratch, "%s-%s.xml" % (args.label, name))
            summary["seconds"][name] = round(oscap(args.root, datastream, results, profile, tailoring_file,
                                                   apt_config), 1)
            with open(results, "rb") as handle:
                raw = handle.read()
            with gzip.open(os.path.join(args.out, "%s-%s.xml.gz" % (args.label, name)), "wb") as handle:
                handle.write(raw)
            outcome = scanner.parse_results(raw.decode("utf-8"))
            summary["profiles"][name] = scanner.counts(outcome)
            if tailoring_file:
                mapped_results = outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = scanner.agreement(document, mapped_results, mapping)
    summary["agreement"] = {k: len(v) for k, v in report.items()}
    summary["details"] = report
    with open(os.path.join(args.out, "%s-summary.json" % args.label), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    target = document.get("target") or {}
    print("SSG %s %s on %s (%s %s), %s the role's evidence (%s):" % (
        content["package"], content["version"], document["host"], target.get("distribution"),
        target.get("distribution_version"), args.label, document.get("mode")))
    for name, figures in summary["profiles"].items():
        print("  %-26s pass %3d  fail %3d  other %3d" % (name, figures["pass"], figures["fail"], figures["other"]))
    print("  agreement of mapped controls: %(agree)d agree, %(disagree)d disagree, %(not_comparable)d not comparable"
          % summary["agreement"])
    for entry in report["not_comparable"]:
        print("    not comparable %s: %s" % (entry["control"], entry.get("why")))
    for entry in report["disagree"]:
        print("    DISAGREE %s (ours %s) vs %s" % (entry["control"], entry["ours"], entry["scanner"]))
    if args.agreement and report["disagree"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
