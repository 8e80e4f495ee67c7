# -*- coding: utf-8 -*-
"""CMDB contents a release_readiness run checks, shared by the role's tests and the register's."""

from __future__ import annotations

#: the shop service (owner, support group, environment, tier A), this host as an operational
#: server, and the application that is a member of the service and runs on the host: every CMDB
#: gate of the default checklist passes for service ``shop`` on ``localhost``
SHOP_CMDB_PLAYBOOK = """
- name: Register the shop service and this host in the CMDB
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Host
      changeops.itsm.configuration_item:
        name: localhost
        ci_class: server
        attributes: {status: operational, environment: production}
    - name: Service
      changeops.itsm.configuration_item:
        name: shop
        ci_class: service
        attributes: {owner: shop-team, support_group: shop-oncall, environment: production, tier: A}
    - name: Application (member of the service, runs on the host)
      changeops.itsm.configuration_item:
        name: shop-api
        ci_class: application
        relationships:
          - {type: member_of, target: shop, target_class: service}
          - {type: runs_on, target: localhost}
"""
