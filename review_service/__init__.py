# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The review service: where ITSM staff and the CAB sign in, review, approve and search recorded changes.

One more face over the system of record (``plugins/module_utils/system_of_record``), like the plugins:
it reads and writes only through the ``SystemOfRecord`` interface, and every action is a ledger entry
carrying the signed-in person's identity. Its dependencies (``requirements-review.txt``) are an optional
extra: nothing under ``plugins/`` imports this package.

* ``config``   - settings from the environment and the command line
* ``store``    - one system-of-record connection per worker thread
* ``security`` - passwords (argon2), sessions, CSRF tokens, API tokens, the sign-in rate limit
* ``duties``   - roles, and the published policy's separation-of-duties rules for each action
* ``actions``  - review sign-off, CAB approval/rejection, acknowledgement of an unauthorised change
* ``views``    - the data of each page (the change view reuses the change register's)
* ``app``      - the FastAPI application: HTML pages, the JSON API (OpenAPI at /api/openapi.json)
* ``__main__`` - ``serve``, ``create-account`` and friends
"""
