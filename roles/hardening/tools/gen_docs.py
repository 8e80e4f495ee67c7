# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regenerate meta/argument_specs.yml (the hardening_rule_* toggles) and README.md from the sources.

    python roles/hardening/tools/gen_docs.py          # rewrite both files
    python roles/hardening/tools/gen_docs.py --check  # exit 1 if either is stale (used by the tests)

The hand-written part of the argument specs is OPTIONS below; one toggle per catalogue control is
added, so a new control is documented the moment it is catalogued. The README's option table is
rendered from the finished specs, so README and specs cannot disagree.
"""

from __future__ import annotations

import os
import re
import sys

import yaml

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OPTIONS = {
    "hardening_mode": dict(type="str", choices=["audit", "enforce"], default="audit", description=[
        "V(audit) checks every selected control and changes nothing (also under C(--check)).",
        "V(enforce) remediates failing controls, then checks every control again; the results say "
        "V(fixed) for what this run repaired."]),
    "hardening_level": dict(type="int", choices=[1, 2], default=1, description=[
        "Controls up to this level are selected; level 2 adds stricter controls that may cost features.",
        "A control's own C(hardening_rule_<id>) toggle overrides the level."]),
    "hardening_allow_disruptive": dict(type="bool", default=False, description=[
        "Allow remediation of controls flagged disruptive (IP forwarding, password SSH logins, TCP "
        "forwarding, USB storage, ...). Without it those controls are still checked and reported, never changed."]),
    "hardening_fail_severity": dict(type="str", choices=["low", "medium", "high", "critical"], default="high",
                                    description=["Build gate: after V(enforce), the host fails when a control of "
                                                 "this severity or higher fails or errors."]),
    "hardening_gate_in_audit": dict(type="bool", default=False, description=[
        "Apply the build gate in V(audit) mode too (for CI jobs that only audit an image)."]),
    "hardening_waivers": dict(type="list", elements="dict", default=[], description=[
        "Approved exceptions. Each needs exactly C(id), C(justification), C(approver), C(ticket) (change or "
        "risk record) and C(expires) (YYYY-MM-DD, valid through that day).",
        "A waived control is still checked and reported V(waived) and is not remediated; after expiry it "
        "counts as a failure again. A malformed waiver stops the role with an error naming the entry and field."]),
    "hardening_evidence_dir": dict(type="path", default="{{ playbook_dir }}/hardening-evidence", description=[
        "Controller directory for C(<host>.json) (schema C(docs/evidence.schema.json)) and "
        "C(<host>.junit.xml); written on every run, also under C(--check). Empty string disables the files."]),
    "hardening_evidence_record": dict(type="bool", default=True, description=[
        "Attach the summary and per-control results to the run's change event and the host's CI "
        "(C(compliance.<checklist>)) with M(changeops.itsm.checklist_evidence)."]),
    "hardening_evidence_checklist": dict(type="str", default="hardening", description=[
        "Checklist name used for the evidence and the CI attribute C(compliance.<name>)."]),
    "hardening_ssh_permit_root_login": dict(type="str", default="no",
                                            choices=["no", "prohibit-password", "forced-commands-only"],
                                            description=["Expected C(PermitRootLogin) (SSH-01)."]),
    "hardening_ssh_max_auth_tries": dict(type="int", default=4, description=["C(MaxAuthTries) (SSH-06)."]),
    "hardening_ssh_client_alive_interval": dict(type="int", default=300,
                                                description=["C(ClientAliveInterval) in seconds (SSH-07)."]),
    "hardening_ssh_client_alive_count_max": dict(type="int", default=3,
                                                 description=["C(ClientAliveCountMax) (SSH-07)."]),
    "hardening_ssh_login_grace_time": dict(type="int", default=60, description=["C(LoginGraceTime) (SSH-07)."]),
    "hardening_ssh_extra_options": dict(type="dict", default={}, description=[
        "Site sshd options (C(Port), C(AllowGroups), ...) for the role's drop-in "
        "C(/etc/ssh/sshd_config.d/00-changeops-hardening.conf), which sshd reads before the rest of its "
        "configuration. Enforce mode changes nothing else in the sshd configuration.",
        "The drop-in is validated with C(sshd -t) before it replaces the old one, so a bad value fails the task "
        "and leaves the working configuration in place. A keyword of a catalogue control (set it through the "
        "control), C(Match) and C(Include) are errors; an option removed here leaves the drop-in."]),
    "hardening_ssh_banner_text": dict(type="str", default="Authorised access only. Activity on this system is "
                                                          "monitored and recorded.\n",
                                      description=["Text of C(/etc/issue.net) (SSH-10)."]),
    "hardening_password_max_days": dict(type="int", default=365, description=["Highest C(PASS_MAX_DAYS) (AUTH-01)."]),
    "hardening_password_min_days": dict(type="int", default=1, description=["Lowest C(PASS_MIN_DAYS) (AUTH-02)."]),
    "hardening_password_warn_age": dict(type="int", default=7, description=["Lowest C(PASS_WARN_AGE) (AUTH-03)."]),
    "hardening_umask": dict(type="str", default="027", description=["Default umask (AUTH-05, AUTH-06)."]),
    "hardening_time_servers": dict(type="list", elements="str", default=[], description=[
        "NTP servers added to chrony when TIME-03 fails; empty keeps the distribution's pools."]),
    "hardening_package_update_cache": dict(type="bool", default=False,
                                           description=["Refresh the package cache before installing auditd/chrony."]),
    "hardening_find_exclude": dict(type="list", elements="path",
                                   default=["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"],
                                   description=["Paths the world-writable/unowned file search (FS-04, FS-05) skips."]),
}


def load_catalogue():
    with open(os.path.join(ROLE, "vars", "catalogue.yml")) as handle:
        return yaml.safe_load(handle)["__hardening_catalogue"]


def rule_variable(control_id):
    return "hardening_rule_" + control_id.lower().replace("-", "_")


def build_specs():
    catalogue = load_catalogue()
    options = dict(OPTIONS)
    for control in catalogue["controls"]:
        options[rule_variable(control["id"])] = dict(type="bool", description=[
            "%s (%s, level %s%s): %s" % (control["id"], control["severity"], control["level"],
                                         ", disruptive" if control.get("disruptive") else "", control["title"]),
            "Unset: selected by O(hardening_level). V(false) reports the control V(not_applicable) with the reason."])
    return {"argument_specs": {"main": {
        "short_description": "Security baseline as data: audit or enforce, waivers, evidence, build gate",
        "description": [
            "Checks (and in V(enforce) mode remediates) the %s catalogue %s: %d controls over sshd, kernel "
            "parameters and modules, authentication, file permissions, legacy services, auditd and time sync."
            % (catalogue["name"], catalogue["version"], len(catalogue["controls"])),
            "Writes one JSON evidence document and one JUnit file per host and attaches the summary to the "
            "run's change event and the host's CI.",
        ],
        "author": ["changeops.itsm maintainers"],
        "options": options,
    }}}


class _IndentedDumper(yaml.SafeDumper):
    """Indent block sequences under their key, as yamllint (ansible-lint) expects."""

    def increase_indent(self, flow=False, indentless=False):
        return super(_IndentedDumper, self).increase_indent(flow, False)


def render_specs(specs):
    header = ("---\n# Generated by roles/hardening/tools/gen_docs.py from its OPTIONS and vars/catalogue.yml;"
              " edit those, then run it.\n")
    return header + yaml.dump(specs, Dumper=_IndentedDumper, sort_keys=False, width=110,
                              allow_unicode=True)


def markdown(text):
    """ansible-doc markup (V(x), C(x), O(x), M(x), E(x)) -> Markdown code spans."""
    return re.sub(r"\b[VCOME]\(([^)]*)\)", r"`\1`", text)


def render_readme(specs):
    main = specs["argument_specs"]["main"]
    catalogue = load_catalogue()
    lines = ["# changeops.itsm.hardening", "", "<!-- Generated by tools/gen_docs.py from meta/argument_specs.yml and "
             "vars/catalogue.yml: do not edit by hand. -->", ""]
    lines += [markdown(text) for text in main["description"]]
    lines += ["", "See `docs/hardening.md` in the collection for usage, waivers, evidence and the build gate.", "",
              "## Variables", "", "| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for name, spec in main["options"].items():
        if name.startswith("hardening_rule_"):
            continue
        default = spec.get("default")
        text = markdown(" ".join(spec["description"])).replace("|", "\\|").replace("\n", " ")
        lines.append("| `%s` | %s | `%s` | %s |" % (name, spec["type"], str(default).replace("\n", "\\n"), text))
    lines += ["", "## Controls (`hardening_rule_<id>` toggles)", "",
              "CIS numbers refer to the CIS Debian Linux 12 Benchmark v1.1.0. Remediation: `auto` controls are fixed "
              "by `enforce` mode as described; `manual` ones are reported with the steps to take.", "",
              "| Id | Toggle | Severity | Level | Disruptive | Title | CIS | NIST 800-53 | Remediation |",
              "|---|---|---|---|---|---|---|---|---|"]
    for control in catalogue["controls"]:
        lines.append("| %s | `%s` | %s | %s | %s | %s | %s | %s | %s: %s |" % (
            control["id"], rule_variable(control["id"]), control["severity"], control["level"],
            "yes" if control.get("disruptive") else "no", control["title"], control["refs"].get("cis", ""),
            ", ".join(control["refs"].get("nist", [])), control["remediation"],
            " ".join(str(control.get("fix") or "").split()).replace("|", "\\|")))
    return "\n".join(lines) + "\n"


def main(argv):
    specs = build_specs()
    wanted = {os.path.join(ROLE, "meta", "argument_specs.yml"): render_specs(specs),
              os.path.join(ROLE, "README.md"): render_readme(specs)}
    stale = []
    for path, content in wanted.items():
        current = open(path).read() if os.path.exists(path) else None
        if current != content:
            stale.append(path)
            if "--check" not in argv:
                with open(path, "w") as handle:
                    handle.write(content)
    if "--check" in argv and stale:
        print("stale (run roles/hardening/tools/gen_docs.py): %s" % ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
