# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who may authorise what: identities, separation of duties and the published change policy.

* ``identity``  - who is acting, from an authenticated source (the OS account on the controller);
* ``rules``     - the policy's people and duties sections (approver groups, approvals, publishing, reviews);
* ``duties``    - separation of duties: the one place that says whether an identity may approve,
                  reject, review or publish (:func:`duties.refusals`);
* ``policy_store`` - the change policy published into the system of record (versions, the gate's
                  choice between the published policy and a runner's file);
* ``policy_diff``  - what a new policy version changes (templates widened, areas, freezes...).
"""
