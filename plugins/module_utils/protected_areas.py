# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The built-in protected areas: the security functions no pre-authorised (standard) change may touch.

A mistake in any of them locks people out, lets the wrong people in, or blinds the people who
would notice: authentication and access (PAM, sshd, sudoers, local accounts and keys, the host
firewall), and the controls that keep a host honest (audit logging, mandatory access control,
kernel security parameters, password and login policy, the trust store and system crypto
policy). Each area names what touches it:

* ``modules``  - task actions (``ansible.posix.sysctl``; a pattern without a dot matches the short name);
* ``roles``    - role names (globs: ``*selinux*``);
* ``tags``     - task or play tags;
* ``paths``    - files a task writes (a trailing ``/``: the directory and everything below; else a glob);
* ``services`` - services a service module (``service``, ``systemd_service``...) manages: stopping
  ``auditd`` is as much a change to audit logging as editing its rules;
* ``commands`` - programs a ``command``/``shell``/``raw`` task runs (its first word, or the first
  word of each part of a shell line): ``auditctl -e 0`` disables auditing without writing a file;
  ``systemctl stop auditd`` and ``service auditd stop`` count as managing the service ``auditd``.

A policy keeps them all (``default_protected_areas: true``), drops some by name
(``disabled_protected_areas``), replaces one by defining an area of the same name, or adds its own.
The table in docs/policy-schema.md lists these; a test keeps the two equal.
"""

from __future__ import annotations

AREA_LISTS = ("modules", "roles", "tags", "paths", "services", "commands")

DEFAULT_PROTECTED_AREAS = {
    "pam": {
        "description": "Pluggable authentication modules",
        "modules": ["community.general.pamd"],
        "roles": ["*pam*"],
        "tags": ["pam"],
        "paths": ["/etc/pam.d/", "/etc/pam.conf", "/etc/security/"],
        "commands": ["pam-auth-update", "authselect", "authconfig"],
    },
    "sshd": {
        "description": "SSH daemon and client configuration",
        "modules": [],
        "roles": ["*ssh*"],
        "tags": ["ssh", "sshd"],
        "paths": ["/etc/ssh/"],
        "services": ["ssh", "sshd", "ssh.socket"],
    },
    "sudoers": {
        "description": "Privilege escalation rules",
        "modules": ["community.general.sudoers"],
        "roles": ["*sudo*"],
        "tags": ["sudo", "sudoers"],
        "paths": ["/etc/sudoers*"],
    },
    "users_keys": {
        "description": "Local accounts, groups and SSH authorized keys",
        "modules": ["ansible.builtin.user", "ansible.builtin.group", "ansible.posix.authorized_key"],
        "roles": [],
        "tags": ["users", "authorized_keys"],
        "paths": ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "*/.ssh/authorized_keys*"],
        "commands": ["useradd", "usermod", "userdel", "adduser", "deluser", "groupadd", "groupmod", "groupdel",
                     "gpasswd", "passwd", "chpasswd", "chage"],
    },
    "firewall": {
        "description": "Host firewall rules",
        "modules": ["community.general.ufw", "ansible.posix.firewalld", "ansible.builtin.iptables",
                    "community.general.iptables_state", "community.general.nftables", "*.win_firewall",
                    "*.win_firewall_rule"],
        "roles": ["*firewall*", "*iptables*", "*nftables*", "*ufw*"],
        "tags": ["firewall"],
        "paths": ["/etc/nftables.conf", "/etc/nftables.d/", "/etc/iptables/", "/etc/ufw/", "/etc/firewalld/"],
        "services": ["ufw", "firewalld", "nftables", "netfilter-persistent", "iptables", "ip6tables"],
        "commands": ["iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "nft", "ufw", "firewall-cmd"],
    },
    "audit_logging": {
        "description": "Audit logging: auditd rules and configuration, journald and rsyslog configuration and forwarding",
        "modules": [],
        "roles": ["*auditd*", "*rsyslog*", "*journald*", "*syslog*"],
        "tags": ["audit", "auditd", "rsyslog", "journald", "syslog"],
        "paths": ["/etc/audit/", "/etc/audisp/", "/etc/rsyslog.conf", "/etc/rsyslog.d/", "/etc/syslog-ng/",
                  "/etc/systemd/journald.conf", "/etc/systemd/journald.conf.d/", "/etc/systemd/journal-upload.conf",
                  "/etc/systemd/journal-remote.conf"],
        "services": ["auditd", "rsyslog", "syslog", "syslog-ng", "systemd-journald", "systemd-journal-upload",
                     "systemd-journal-remote"],
        "commands": ["auditctl", "augenrules"],
    },
    "mandatory_access_control": {
        "description": "Mandatory access control: SELinux and AppArmor",
        "modules": ["ansible.posix.selinux", "ansible.posix.seboolean", "community.general.sefcontext",
                    "community.general.selinux_permissive", "community.general.selogin",
                    "community.general.seport", "community.general.seboolean"],
        "roles": ["*selinux*", "*apparmor*"],
        "tags": ["selinux", "apparmor"],
        "paths": ["/etc/selinux/", "/etc/apparmor/", "/etc/apparmor.d/"],
        "services": ["apparmor", "restorecond"],
        "commands": ["setenforce", "setsebool", "semanage", "semodule", "restorecon", "chcon", "aa-disable",
                     "aa-complain", "aa-enforce", "apparmor_parser"],
    },
    "kernel_security": {
        "description": "Kernel security parameters: sysctl settings, kernel modules and their blacklists, boot parameters",
        "modules": ["ansible.posix.sysctl", "community.general.modprobe", "community.general.kernel_blacklist"],
        "roles": ["*sysctl*", "*kernel*"],
        "tags": ["sysctl", "kernel"],
        "paths": ["/etc/sysctl.conf", "/etc/sysctl.d/", "/usr/lib/sysctl.d/", "/run/sysctl.d/", "/etc/modprobe.d/",
                  "/etc/modules", "/etc/modules-load.d/", "/etc/default/grub", "/etc/default/grub.d/"],
        "services": ["systemd-sysctl", "procps"],
        "commands": ["sysctl", "modprobe", "insmod", "rmmod"],
    },
    "login_policy": {
        "description": "Password and login policy: login.defs, pwquality, faillock",
        "modules": [],
        "roles": ["*pwquality*", "*faillock*", "*password*", "*login_defs*"],
        "tags": ["login_defs", "pwquality", "faillock", "password_policy"],
        "paths": ["/etc/login.defs", "/etc/security/pwquality.conf", "/etc/security/pwquality.conf.d/",
                  "/etc/security/faillock.conf", "/etc/default/useradd", "/etc/securetty", "/etc/libuser.conf"],
        "commands": ["faillock", "pam_tally2"],
    },
    "trust_store": {
        "description": "Trust store and system crypto policy: CA certificates, crypto-policies",
        "modules": ["community.general.java_cert"],
        "roles": ["*ca_cert*", "*ca-cert*", "*trust_store*", "*crypto_polic*", "*crypto-polic*"],
        "tags": ["ca_certificates", "trust_store", "crypto_policies", "crypto-policies"],
        "paths": ["/usr/local/share/ca-certificates/", "/usr/share/ca-certificates/", "/etc/ca-certificates.conf",
                  "/etc/ca-certificates/", "/etc/ssl/certs/", "/etc/pki/ca-trust/", "/etc/pki/tls/certs/ca-bundle*",
                  "/etc/crypto-policies/", "/etc/ssl/openssl.cnf", "/etc/gnutls/config"],
        "commands": ["update-ca-certificates", "update-ca-trust", "update-crypto-policies", "trust"],
    },
}

#: service modules: their ``name`` is the service they start, stop, enable or mask
SERVICE_MODULES = frozenset(("service", "systemd", "systemd_service", "sysvinit", "runit", "openrc", "win_service"))
