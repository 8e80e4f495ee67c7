# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change intelligence (issue 18): what the ledger and the CMDB know together.

* ``graph.py``        the one walk of CMDB relationships: "what depends on X" (blast radius,
                      ``configuration_item_info``'s ``related_to``) and "what X depends on" (triage);
* ``schedules.py``    recurring maintenance windows (RFC 5545 RRULE through python-dateutil, cron through croniter);
* ``policy.py``       the policy's ``collisions``, ``blast_radius`` and ``maintenance_windows`` sections;
* ``collisions.py``   other work on the same CIs at the same time (running runs, approved change requests,
                      maintenance windows) and what the policy says a collision does;
* ``gate.py``         the gate's one entry point: blast radius into the change context, collisions into the decision;
* ``triage.py``       "what changed before this incident?";
* ``metrics.py``      the four DORA keys from the record;
* ``metric_rules.py`` what the metrics count, shared by the raw and the rollup computations and the projectors;
* ``candidates.py``   standard changes earned from the record, and templates whose changes started failing;
* ``links.py``        incidents and remediations linked to change events (``change_link``).

Everything reads the system of record through its interface (``SystemOfRecord.find_*``) and returns plain data.
"""
