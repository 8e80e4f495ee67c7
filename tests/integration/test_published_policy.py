# -*- coding: utf-8 -*-
"""The change policy published into the system of record, in real ansible-playbook runs.

Before publishing existed, the policy was whatever file the person running the play pointed the
gate at (``policy:``, ``CHANGEOPS_GATE_POLICY``): a runner could bring a policy that allows
everything. Once a version is published the gate decides under it, and a runner's file counts
only when it is that version; a ``--check`` run shows a draft's decision beside it.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from support.change_requests import add_ci, approved_change, gate_entries, iso

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import os_user

pytestmark = pytest.mark.integration

STRICT = """
templates:
  - name: motd
    description: the message of the day only
    conditions:
      - "length(paths[?!starts_with(@, '/tmp/')]) == `0`"
      - "!contains(tags, 'anything')"
"""

# what a runner who wants their change through would bring: the same template without its limit
PERMISSIVE = """
templates:
  - name: motd
    description: the message of the day only
    conditions: ["`true`"]
    allow_opaque_actions: true
default_protected_areas: false
"""

PLAYBOOK = """
- name: A change under the gate
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
%s      register: gate
    - name: The change
      ansible.builtin.copy:
        content: "x"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
      tags: [anything]
"""

PUBLISH = """
- name: Publish the change policy
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish
      changeops.itsm.change_policy:
        src: "{{ src }}"
        comment: "{{ comment | default(omit) }}"
        change_request: "{{ chg | default(omit) }}"
      register: published
    - name: Show it
      ansible.builtin.debug:
        var: published
"""


def sha(text):
    return hashlib.sha256(text.lstrip("\n").encode()).hexdigest()


def setup(project, sor, gate_args=""):
    project.write_inventory(["web01"], group="web")
    with open(project.path("inventory.ini"), "a") as handle:
        handle.write("[control]\nlocalhost ansible_connection=local\n")
    project.write("strict.yml", STRICT)
    project.write("permissive.yml", PERMISSIVE)
    project.write("publish.yml", PUBLISH)
    project.write("pb.yml", PLAYBOOK % "".join("        %s\n" % line for line in gate_args.splitlines()))
    os.makedirs(project.path("out"), exist_ok=True)
    add_ci(sor, "web01", environment="test")


def publish(project, src, *args, check=True):
    return project.run("publish.yml", "-e", "src=%s" % src, *args, check=check)


def written(project):
    return sorted(os.listdir(project.path("out")))


def test_without_a_published_policy_the_configured_file_decides_marked_unpublished(project, sor):
    setup(project, sor, "policy: permissive.yml")
    project.run("pb.yml")
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == (True, "standard")
    assert decision["policy"]["state"] == "unpublished"
    assert decision["policy"]["sha256"] == sha(PERMISSIVE)
    assert decision["identities"]["runner"] == {"name": os_user(), "source": "os"}


def test_the_published_policy_decides_and_a_runners_other_file_is_refused_naming_both_hashes(project, sor):
    setup(project, sor, "policy: permissive.yml")
    # check mode first: what would be published, nothing recorded
    run = publish(project, "strict.yml", "--check", "--diff")
    assert "first published version: 1 templates" in run.stdout
    assert sor.get_policy() is None
    publish(project, "strict.yml", "-e", "{\"comment\": \"CAB 2026-11-23\"}")
    published = sor.get_policy()
    assert (published["version"], published["sha256"], published["previous_version"]) == (1, sha(STRICT), None)
    assert published["publisher"] == {"name": os_user(), "source": "os"}
    assert published["comment"] == "CAB 2026-11-23" and published["summary"]["first_version"] is True
    # publishing the same file again changes nothing
    run = publish(project, "strict.yml")
    assert "changed=0" in run.stdout and sor.get_policy()["version"] == 1

    run = project.run("pb.yml", check=False)
    assert run.returncode != 0 and written(project) == []
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied"
    assert decision["reasons"][0].startswith(
        "the change policy file %s (sha256 %s) is not the published policy in force: version 1 (sha256 %s, "
        "published by %s" % (project.path("permissive.yml"), sha(PERMISSIVE), sha(STRICT), os_user()))
    assert decision["policy"]["state"] == "published" and decision["policy"]["version"] == 1

    # the environment variable is a runner's file like any other
    project.write("pb.yml", PLAYBOOK % "")
    run = project.run("pb.yml", check=False, env={"CHANGEOPS_GATE_POLICY": project.path("permissive.yml")})
    assert run.returncode != 0 and written(project) == []
    assert "is not the published policy in force" in gate_entries(sor)[-1]["reasons"][0]

    # without a file the published policy decides: the strict template does not cover this play
    run = project.run("pb.yml", check=False)
    decision = gate_entries(sor)[-1]
    assert decision["type"] == "denied" and decision["policy"]["version"] == 1
    assert any("standard change 'motd': condition !contains(tags, 'anything') is false" in reason
               for reason in decision["reasons"]), decision["reasons"]
    # and the published file itself is accepted as the runner's file
    project.write("pb.yml", PLAYBOOK % "        policy: strict.yml\n")
    project.run("pb.yml", check=False)
    assert gate_entries(sor)[-1]["policy"]["state"] == "published"
    assert not any("not the published policy" in reason for reason in gate_entries(sor)[-1]["reasons"])


def test_a_check_run_shows_the_draft_beside_the_published_policy(project, sor):
    setup(project, sor, "policy: permissive.yml")
    publish(project, "strict.yml")
    run = project.run("pb.yml", "--check")
    [decision] = gate_entries(sor)
    assert decision["type"] == "dry-run"
    assert decision["would_be"]["type"] == "denied"
    assert decision["policy"] == dict(decision["policy"], state="published", version=1)
    assert decision["draft"]["policy"]["state"] == "draft"
    assert decision["draft"]["policy"]["sha256"] == sha(PERMISSIVE)
    assert (decision["draft"]["would_be"]["allowed"], decision["draft"]["would_be"]["type"]) == (True, "standard")
    flat = re.sub(r"\s+", " ", run.stdout)
    assert ("under the published policy version 1; under the draft %s (sha256 %s, not published) a real run would "
            "be a standard change (motd)" % (project.path("permissive.yml"), sha(PERMISSIVE)[:12])) in flat


def test_a_new_version_says_what_it_widens_and_an_older_file_is_superseded(project, sor):
    setup(project, sor, "policy: strict.yml")
    publish(project, "strict.yml")
    project.write("v2.yml", STRICT.replace("      - \"!contains(tags, 'anything')\"\n", "") +
                  "    max_hosts: 5\ndisabled_protected_areas: [audit_logging]\n")
    run = publish(project, "v2.yml", "--diff")
    assert re.search(r"template motd WIDENED: condition removed: !contains\(tags, 'anything'\)", run.stdout), run.stdout
    assert "protected areas REMOVED: audit_logging" in run.stdout
    current = sor.get_policy()
    assert (current["version"], current["previous_version"], current["previous_sha256"]) == (2, 1, sha(STRICT))
    assert current["summary"]["templates"]["widened"] == ["motd"]
    assert current["summary"]["protected_areas"]["removed"] == ["audit_logging"]
    assert [version["version"] for version in sor.find_policies()] == [2, 1]

    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert "the file is version 1, superseded" in gate_entries(sor)[-1]["reasons"][0]


def test_publishing_is_a_change_the_policy_in_force_must_authorise(project, sor):
    setup(project, sor)
    guarded = STRICT + """
approver_groups:
  change-managers: {accounts: [nobody-here]}
publishing:
  publishers: [change-managers]
"""
    project.write("guarded.yml", guarded)
    # the first version: its own rules decide, and they do not name this account
    run = publish(project, "guarded.yml", check=False)
    assert run.returncode != 0
    assert ("%s may not publish the change policy: not in change-managers (rule publishing.publishers: "
            "change-managers (accounts nobody-here))" % os_user()) in run.stdout
    assert sor.get_policy() is None

    project.write("guarded.yml", guarded.replace("nobody-here", os_user()) +
                  "  require_change_request: true\n")
    run = publish(project, "guarded.yml", check=False)
    assert run.returncode != 0
    assert "publishing the change policy needs an approved change request" in run.stdout
    number = approved_change(sor, ["web01"], iso(hours=-1), iso(hours=2))
    publish(project, "guarded.yml", "-e", "chg=%s" % number)
    published = sor.get_policy()
    assert published["version"] == 1 and published["authorised_by"]["change_request"] == number

    # the next version needs what version 1 says: an approved request
    project.write("v2.yml", guarded.replace("nobody-here", os_user()))
    run = publish(project, "v2.yml", check=False)
    assert run.returncode != 0 and "rule publishing.require_change_request: true" in run.stdout
    info = project.write("info.yml", """
- name: Read the policy in force
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read
      changeops.itsm.change_policy_info:
      register: policy
    - name: Check
      ansible.builtin.assert:
        that:
          - policy.state == 'published'
          - policy.active.version == 1
          - policy.history | length == 1
          - policy.active.publisher.source == 'os'
""")
    project.run(os.path.basename(info))
