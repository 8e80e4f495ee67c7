# -*- coding: utf-8 -*-
"""A simulator of ServiceNow's documented REST APIs, on loopback. NOT a real ServiceNow instance.

No ServiceNow instance is reachable from this machine, so the collection's real
client (``plugins/module_utils/servicenow``, on ``requests``) is tested against this
real HTTP server on 127.0.0.1, which follows the documented behaviour: see
``server.py`` for what it emulates and ``fixtures.py`` for its data, each entry with
the documentation page it follows and the assumptions made where the pages are
silent or disagree. Nothing here mocks ``requests``.

Use it in-process (``Simulator(...).start()``, a thread) or as a process that a test
can kill (``SimulatorProcess``, ``python -m support.servicenow_sim`` or
``python tests/support/servicenow_sim``), with its records saved to a state file so
a restarted simulator is the same instance. ``Control`` drives the harness's
``/__sim/`` API (faults, rate limits, accounts, raw records, the request log).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .server import Simulator

__all__ = ["Control", "Simulator", "SimulatorProcess"]

HERE = os.path.dirname(os.path.abspath(__file__))


class Control(object):
    """The simulator's control API (``/__sim/``), over plain urllib (never the client under test)."""

    def __init__(self, url, context=None):
        self.url = url.rstrip("/")
        self.context = context

    def call(self, method, path, payload=None):
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        request = urllib.request.Request(self.url + "/__sim/" + path.lstrip("/"), data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if exc.code >= 400:
                raise AssertionError("simulator control %s %s: %s %s" % (method, path, exc.code, raw[:500]))
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            return raw

    # conveniences
    def health(self):
        return self.call("GET", "health")

    def requests(self):
        return self.call("GET", "log")["requests"]

    def reset_log(self):
        return self.call("POST", "log/reset", {})

    def fault(self, **spec):
        return self.call("POST", "faults", spec)

    def clear_faults(self):
        return self.call("DELETE", "faults")

    def records(self, table, query=""):
        import urllib.parse

        return self.call("GET", "records/%s?query=%s" % (table, urllib.parse.quote(query)))["records"]

    def insert(self, table, values):
        return self.call("POST", "records/%s" % table, values)["record"]

    def update(self, table, sys_id, values):
        return self.call("PATCH", "records/%s/%s" % (table, sys_id), values)["record"]

    def attachment(self, sys_id):
        return self.call("GET", "attachments/%s" % sys_id)

    def options(self, **values):
        return self.call("POST", "options", values)

    def users(self, users):
        return self.call("POST", "users", users)

    def api_keys(self, keys):
        return self.call("POST", "api_keys", keys)

    def oauth_clients(self, clients):
        return self.call("POST", "oauth_clients", clients)


class SimulatorProcess(object):
    """The simulator in a process of its own (so a test can kill it), its records in ``state_path``."""

    def __init__(self, state_path, port=0, certfile=None, keyfile=None, log_path=None):
        self.state_path = str(state_path)
        self.port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self.log_path = log_path or self.state_path + ".log"
        self.process = None
        self.url = None

    def start(self, timeout=30):
        port_file = self.state_path + ".port"
        if os.path.exists(port_file):
            os.unlink(port_file)
        command = [sys.executable, HERE, "--state", self.state_path, "--port", str(self.port),
                   "--port-file", port_file]
        if self.certfile:
            command += ["--certfile", self.certfile, "--keyfile", self.keyfile]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as handle:
                    text = handle.read().strip()
                if text:
                    self.port = int(text)
                    self.url = "%s://127.0.0.1:%d" % ("https" if self.certfile else "http", self.port)
                    return self
            if self.process.poll() is not None:
                raise AssertionError("the simulator exited with %s (log %s)"
                                     % (self.process.returncode, self.log_path))
            time.sleep(0.05)
        raise AssertionError("the simulator did not start within %d s (log %s)" % (timeout, self.log_path))

    def kill(self):
        """SIGKILL: the simulator dies mid-request, as an instance outage would look to the client."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
