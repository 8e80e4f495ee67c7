# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``app`` for an ASGI server (``uvicorn ansible_collections.changeops.itsm.review_service.asgi:app``), configured
from the environment (``CHANGEOPS_REVIEW_*``, ``CHANGEOPS_BACKEND``...): what each uvicorn worker imports."""

from __future__ import annotations

from ansible_collections.changeops.itsm.review_service.app import create_app
from ansible_collections.changeops.itsm.review_service.config import ServiceConfig

app = create_app(ServiceConfig())
