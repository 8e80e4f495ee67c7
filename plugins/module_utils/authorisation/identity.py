# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is acting: a small value with the source that vouches for it.

Approvals, rejections, review sign-offs, policy publications and the gate's runner are recorded
with an :class:`Identity`, never with a name someone typed. On the controller the source is the
operating system: :func:`os_identity` is the account the process runs as, from its uid (what
LOGNAME/USER claim is not believed). Other faces over the system of record (the review service)
make identities of their own source for the people signed in to them, with the groups they vouch
for; the separation-of-duties rules (``duties.py``) take any of them.
"""

from __future__ import annotations

import getpass
import os

try:
    import grp
    import pwd
except ImportError:  # not POSIX
    grp = None
    pwd = None

#: the identity comes from the operating system account the process runs as (its uid)
SOURCE_OS = "os"
#: read from a record written before identities were recorded (a free-text name): it proves nothing
SOURCE_UNVERIFIED = "unverified"


def os_user():
    """The account this process runs as, from its uid.

    Unlike ``getpass.getuser()``, which believes LOGNAME/USER, nobody can become someone else
    here by setting an environment variable: this is the name authorisation decisions use.
    """
    if pwd is not None and hasattr(os, "getuid"):
        try:
            return pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without a passwd entry (some containers)
            return str(os.getuid())
    try:
        return getpass.getuser()  # no uids on this platform
    except Exception:  # pylint: disable=broad-except
        return "unknown"


def claimed_user():
    """The login name the environment claims (LOGNAME, USER...), or None when it is the real one."""
    try:
        claimed = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return None
    return claimed if claimed != os_user() else None


def os_groups(name):
    """The OS groups of account ``name`` (primary and supplementary), as the group database says."""
    if pwd is None or grp is None:
        return ()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return ()
    names = set()
    try:
        gids = os.getgrouplist(name, entry.pw_gid)
    except (AttributeError, OSError):
        gids = [entry.pw_gid]
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return tuple(sorted(names))


class Identity(object):
    """``{"name": ..., "source": ...}``: who acted, and what vouches for it.

    ``groups``: the groups the source vouches for. For the OS they are read from the group
    database when first needed (only rules naming groups need them), for other sources they
    are given by the source. Two identities are the same person only when name *and* source
    match: an OS account and a review-service login that share a name are not assumed to be
    one person, except by the rules that refuse (requester and approver), which compare names.
    """

    __slots__ = ("name", "source", "_groups")

    def __init__(self, name, source=SOURCE_OS, groups=None):
        if not isinstance(name, str) or not name.strip():
            raise ValueError("an identity needs a name")
        self.name = name
        self.source = source
        self._groups = tuple(groups) if groups is not None else None

    @property
    def authenticated(self):
        return self.source != SOURCE_UNVERIFIED

    @property
    def groups(self):
        if self._groups is None:
            self._groups = os_groups(self.name) if self.source == SOURCE_OS else ()
        return self._groups

    def to_dict(self):
        return {"name": self.name, "source": self.source}

    @classmethod
    def from_dict(cls, value, fallback_name=None):
        """An identity read back from a record; a bare name (records older than identities) is unverified."""
        if isinstance(value, dict) and value.get("name"):
            return cls(value["name"], value.get("source") or SOURCE_UNVERIFIED)
        if fallback_name:
            return cls(str(fallback_name), SOURCE_UNVERIFIED)
        return None

    def same_as(self, other):
        return other is not None and self.name == other.name and self.source == other.source

    def __eq__(self, other):
        return isinstance(other, Identity) and self.same_as(other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.name, self.source))

    def __repr__(self):
        return "Identity(%r, %r)" % (self.name, self.source)

    def __str__(self):
        return self.name if self.source == SOURCE_OS else "%s (%s)" % (self.name, self.source)


def os_identity():
    """The identity of the account this process runs as: the one identity of controller-side code."""
    return Identity(os_user(), SOURCE_OS)
