# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passwords given to well-known commands as options: ``mysql -pPW``, ``sshpass -p PW``, ``curl -u user:PW``.

A generic rule cannot tell ``mysql -pSecret`` from ``ssh -p2222`` or ``docker run -p 8080:80``, so each
command has its own rules (``COMMAND_RULES``). A command name is found by one pattern; its arguments
are then read token by token (quotes understood, as ``shlex.join`` writes an argv) up to the end of
that command (``;``, ``|``, ``&``, a newline), so each character is read once. Options written
``--password=PW`` or ``--password PW`` need no rule here: the ``key_value_pair`` detector takes them.
"""

from __future__ import annotations

import re

# How an option carries the secret:
#   "next"      the next argument is the secret             (sshpass -p PW)
#   "attached"  the rest of the same argument is the secret (mysql -pPW); "-p" alone prompts
#   "both"      attached when there is a rest, else the next argument
# and which part of it:
#   None        all of it
#   ":"/"%"     what follows the first ":" / "%" (curl -u user:PW, smbclient -U user%PW); nothing without one
#   "pass:"     what follows a "pass:" prefix (openssl -passin pass:PW; env:VAR and file:PATH are no secret)
_MYSQL = {"-p": ("attached", None)}
_MONGO = {"-p": ("next", None)}
_LOGIN = {"-p": ("next", None)}
COMMAND_RULES = {
    "mysql": _MYSQL, "mysqldump": _MYSQL, "mysqladmin": _MYSQL, "mysqlimport": _MYSQL, "mysqlcheck": _MYSQL,
    "mysqlshow": _MYSQL, "mysqlpump": _MYSQL, "mysqlsh": _MYSQL, "mariadb": _MYSQL, "mariadb-dump": _MYSQL,
    "mariadb-admin": _MYSQL, "mariadb-import": _MYSQL, "mariadb-check": _MYSQL,
    "sshpass": {"-p": ("both", None)},
    "curl": {"-u": ("both", ":"), "--user": ("next", ":"), "-U": ("both", ":"), "--proxy-user": ("next", ":")},
    "redis-cli": {"-a": ("next", None)},
    "ldapsearch": {"-w": ("next", None)}, "ldapmodify": {"-w": ("next", None)}, "ldapadd": {"-w": ("next", None)},
    "ldapdelete": {"-w": ("next", None)}, "ldappasswd": {"-w": ("next", None), "-s": ("next", None),
                                                         "-a": ("next", None)},
    "ldapwhoami": {"-w": ("next", None)}, "ldapcompare": {"-w": ("next", None)},
    "smbclient": {"-U": ("both", "%"), "--user": ("next", "%")},
    "rpcclient": {"-U": ("both", "%"), "--user": ("next", "%")},
    "openssl": {"-passin": ("next", "pass:"), "-passout": ("next", "pass:"), "-pass": ("next", "pass:"),
                "-password": ("next", "pass:"), "-k": ("next", None)},
    "sqlcmd": {"-P": ("both", None)}, "bcp": {"-P": ("both", None)},
    "ipmitool": {"-P": ("next", None)},
    "mongo": _MONGO, "mongosh": _MONGO, "mongodump": _MONGO, "mongorestore": _MONGO, "mongoexport": _MONGO,
    "mongoimport": _MONGO,
    "useradd": {"-p": ("next", None)}, "usermod": {"-p": ("next", None)},
    # "-p" is a port elsewhere (docker run -p 8080:80): only after "login"
    "docker": _LOGIN, "podman": _LOGIN, "buildah": _LOGIN, "skopeo": _LOGIN, "nerdctl": _LOGIN,
}
_NEEDS_LOGIN = frozenset(("docker", "podman", "buildah", "skopeo", "nerdctl"))
# htpasswd -b FILE USER PASSWORD / htpasswd -nb USER PASSWORD: a positional argument
_POSITIONAL = frozenset(("htpasswd",))

#: a command line can only hold one of these if it names one of the commands (lower case)
TRIGGERS = ("mysql", "mariadb", "sshpass", "curl", "redis-cli", "ldap", "smbclient", "rpcclient", "openssl", "sqlcmd",
            "bcp", "ipmitool", "mongo", "useradd", "usermod", "docker", "podman", "buildah", "skopeo", "nerdctl",
            "htpasswd")
_NAMES = sorted(set(COMMAND_RULES) | _POSITIONAL, key=len, reverse=True)
#: a command name as a word, maybe with a directory (/usr/bin/mysql)
COMMAND_RE = re.compile(r"(?<![\w./-])(?>(?:[\w.-]*+/)*+)(?P<command>%s)(?![\w.-])"
                        % "|".join(re.escape(name) for name in _NAMES))
#: one shell word (quotes kept) or a separator ending the command
TOKEN_RE = re.compile(r"""(?P<word>(?:'[^'\n]*+'?+|"(?:\\.|[^"\\\n])*+"?+|\\.|[^\s'"\\;&|()<>])++)|(?P<sep>[;&|()\n])""")


def _inner(token_start, token):
    """Span of ``token`` without its surrounding quotes."""
    if len(token) >= 2 and token[0] in "'\"" and token[-1] == token[0]:
        return token_start + 1, token_start + len(token) - 1
    return token_start, token_start + len(token)


def _part(text, start, end, part):
    """Span of the secret part of ``text[start:end]`` (see COMMAND_RULES), or None."""
    if part is None:
        return (start, end) if end > start else None
    value = text[start:end]
    if part == "pass:":
        return (start + 5, end) if value.startswith("pass:") and end > start + 5 else None
    index = value.find(part)
    return (start + index + 1, end) if index >= 0 and start + index + 1 < end else None


def secret_spans(text):
    """Spans of option values that are passwords, in order."""
    spans = []
    position = 0
    while position < len(text):
        found = COMMAND_RE.search(text, position)
        if found is None:
            break
        command = found.group("command")
        rules = COMMAND_RULES.get(command, {})
        position = found.end()
        pending = None  # (part,) of the option waiting for its argument
        login = command not in _NEEDS_LOGIN
        options = ""
        positional = 0
        for token in TOKEN_RE.finditer(text, position):
            position = token.end()
            if token.group("sep") is not None:
                break
            word = token.group("word")
            start = token.start()
            if pending is not None:
                inner = _inner(start, word)
                span = _part(text, inner[0], inner[1], pending[0])
                if span:
                    spans.append(span)
                pending = None
                continue
            if command in _POSITIONAL:
                if word.startswith("-") and len(word) > 1:
                    options += word[1:]
                    continue
                positional += 1
                # htpasswd -b FILE USER PASSWORD, htpasswd -nb USER PASSWORD
                if "b" in options and positional == (2 if "n" in options else 3):
                    inner = _inner(start, word)
                    if inner[1] > inner[0]:
                        spans.append(inner)
                continue
            if word == "login":
                login = True
            if not login:
                continue
            for option, (how, part) in rules.items():
                if word == option and how in ("next", "both"):
                    pending = (part,)
                    break
                if how in ("attached", "both") and word.startswith(option) and len(word) > len(option) \
                        and not word.startswith("--"):
                    inner = _inner(start + len(option), word[len(option):])
                    span = _part(text, inner[0], inner[1], part)
                    if span:
                        spans.append(span)
                    break
        else:
            break
    return spans
