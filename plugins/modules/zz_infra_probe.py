#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zz_infra_probe
short_description: Throwaway probe module for the test infrastructure
version_added: 0.1.0
description:
  - Echoes a value back. Exists only to prove that the sanity stage works.
author:
  - changeops.itsm maintainers
options:
  value:
    description:
      - The value to echo.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Echo a value
  changeops.itsm.zz_infra_probe:
    value: hello
"""

RETURN = r"""
value:
  description: The value given.
  returned: always
  type: str
  sample: hello
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(value=dict(type="str", required=True)), supports_check_mode=True)
    module.exit_json(changed=False, value=module.params["value"])


if __name__ == "__main__":
    main()
