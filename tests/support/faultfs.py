# -*- coding: utf-8 -*-
"""A small file system of a test's own that the test can break: read-only, full or immutable.

Tests run as root, so file permissions cannot make a directory unwritable; these faults can:

* ``read_only()``: ``mount -o remount,ro`` (what a file system remounted read-only after an I/O
  error looks like);
* ``fill()``: a filler file takes every free byte (a full disk);
* ``immutable(path)``: ``chattr +i`` on a directory (nothing can be created, renamed or removed in it);
  ``break_it("immutable", directory)`` freezes the directories under it too.

It is a tmpfs when the kernel supports ``chattr`` on tmpfs (Linux 6.0 and later), else an ext4 image
on a loop device. Mounting needs root (CAP_SYS_ADMIN): without it the tests that use this skip, saying so.
"""

from __future__ import annotations

import errno
import os
import subprocess

import pytest


def _run(*argv):
    return subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False, stdin=subprocess.DEVNULL)


class FaultFS(object):
    def __init__(self, mountpoint, size_mb=16):
        self.mountpoint = str(mountpoint)
        self.size_mb = size_mb
        self.image = None
        self.kind = None
        self._immutable = []

    def mount(self):
        os.makedirs(self.mountpoint, exist_ok=True)
        mounted = _run("mount", "-t", "tmpfs", "-o", "size=%dm,mode=0755" % self.size_mb, "tmpfs", self.mountpoint)
        if mounted.returncode != 0:
            pytest.skip("cannot mount a tmpfs for fault injection (needs root): %s" % mounted.stdout.strip())
        self.kind = "tmpfs"
        if not self._chattr_works():
            _run("umount", self.mountpoint)
            self._mount_ext4_image()
        return self

    def _chattr_works(self):
        probe = os.path.join(self.mountpoint, ".chattr-probe")
        os.makedirs(probe, exist_ok=True)
        works = _run("chattr", "+i", probe).returncode == 0
        if works:
            _run("chattr", "-i", probe)
        os.rmdir(probe)
        return works

    def _mount_ext4_image(self):
        self.image = self.mountpoint.rstrip("/") + ".ext4"
        with open(self.image, "wb") as handle:
            handle.truncate(self.size_mb * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", self.image)
        mounted = _run("mount", "-o", "loop", self.image, self.mountpoint) if made.returncode == 0 else made
        if mounted.returncode != 0:
            pytest.skip("no file system here supports chattr +i: %s" % mounted.stdout.strip())
        self.kind = "ext4"

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    # -- faults ----------------------------------------------------------------------------------
    def read_only(self):
        self._check(_run("mount", "-o", "remount,ro", self.mountpoint))

    def fill(self):
        """Take every free byte (and keep taking what a deleted file frees: the filler grows to the end)."""
        filler = self.path(".filler")
        try:
            with open(filler, "ab") as handle:
                chunk = b"\0" * (1024 * 1024)
                while True:
                    handle.write(chunk)
                    handle.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:
            with open(filler, "ab") as handle:
                while True:
                    handle.write(b"\0" * 512)
                    handle.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise

    def immutable(self, *parts):
        target = self.path(*parts)
        self._check(_run("chattr", "+i", target))
        self._immutable.append(target)

    def break_it(self, fault, directory):
        """Apply ``fault`` (``read-only``, ``full``, ``immutable``); ``directory``: what ``immutable`` freezes."""
        if fault == "read-only":
            self.read_only()
        elif fault == "full":
            self.fill()
        elif fault == "immutable":
            # the directory and every directory already under it: a spool directory that an earlier, healthy
            # run made (under load a 2 s busy timeout spools and replays) must not stay a way around the fault
            for current, _dirs, _files in os.walk(directory):
                self.immutable(os.path.relpath(current, self.mountpoint))
        else:
            raise ValueError(fault)

    def repair(self):
        """Undo every fault: writable, empty of the filler, nothing immutable."""
        _run("mount", "-o", "remount,rw", self.mountpoint)
        for target in reversed(self._immutable):
            _run("chattr", "-i", target)
        self._immutable = []
        try:
            os.unlink(self.path(".filler"))
        except FileNotFoundError:
            pass

    def unmount(self):
        self.repair()
        _run("umount", "-l", self.mountpoint)
        if self.image:
            try:
                os.unlink(self.image)
            except OSError:
                pass

    @staticmethod
    def _check(completed):
        if completed.returncode != 0:
            raise AssertionError(completed.stdout)


def fault_fs(tmp_path, name="faulty", size_mb=16):
    """A mounted ``FaultFS`` (the caller unmounts it); for fixtures."""
    return FaultFS(tmp_path / name, size_mb=size_mb).mount()
