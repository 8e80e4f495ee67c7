# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: change_recorder
short_description: Record every playbook run as a change event in the tamper-evident ledger
description:
  - Records each C(ansible-playbook) run as one change event in the changeops.itsm system of record
    (by default a local SQLite ledger). It records who ran what, from which git commit, with which
    options, and for every play, task, host and loop item the status, timing, a redacted result summary and, in
    diff mode, redacted diffs.
  - Recording never slows the playbook down. Callback methods only queue a small, already-redacted
    record; a writer thread appends batches to the ledger in transactions.
  - Recording never loses data. Results are written while the run goes on. A run killed with
    C(kill -9) keeps every finished task, and the next run on the same controller marks it
    interrupted. When the ledger cannot be written, entries go to a durable local spool (one
    warning) and are replayed later, in order, exactly once. When neither the ledger nor any spool
    location (O(spool_dir), then O(spool_fallback_dir)) takes them, O(on_record_failure) decides whether
    the run goes on and says at its end how many entries of which run were lost (V(warn)), or stops
    before the next task starts on any host (V(fail)).
  - Recording never stores a secret. C(no_log) results (also per loop item) are censored. Vault
    plaintexts (also of vault-encrypted files read during the run) and extra-var values are redacted wherever
    they appear, in any form (stripped, as a number, JSON-escaped, base64-encoded, in another letter case).
    A catalogue of detectors replaces secrets of well-known shapes (private keys, cloud credentials, tokens,
    passwords in URLs, on command lines and in prose, values of secret-looking keys, Kubernetes Secrets),
    plus your own (O(redact_patterns_file), O(secret_vars)). Task arguments are never recorded.
  - A run in check mode is recorded as a dry run, not as a change. Each result records the check mode it
    really ran in, so a task with C(check_mode=false) under C(--check) is recorded as the real change it is.
  - Run by AWX or Ansible Automation Platform, the run's C(origin) records the job (id, template, launch type,
    workflow, schedule, inventory, project revision, the controller's URL) and who launched it, from the
    C(awx_*)/C(tower_*) job metadata extra vars and the job's environment; only those names are read,
    never a credential. See C(docs/awx.md).
type: aggregate
author:
  - changeops.itsm maintainers (@changeops)
version_added: 0.1.0
requirements:
  - Enable it in C(ansible.cfg) (C(callbacks_enabled = changeops.itsm.change_recorder)) or with
    E(ANSIBLE_CALLBACKS_ENABLED).
extends_documentation_fragment:
  - changeops.itsm.backend.PLUGINS
  - changeops.itsm.recorder_post_run
  - changeops.itsm.recorder_change_request
  - changeops.itsm.recorder_register
  - changeops.itsm.recorder_checkpoint
options:
  spool_dir:
    description:
      - Directory of the durable local spool that holds entries the system of record could not take.
      - Each system of record gets its own sub-directory, so entries are only ever replayed into the
        ledger they were meant for.
    type: path
    default: ~/.ansible/changeops/spool
    env:
      - name: CHANGEOPS_SPOOL_DIR
    ini:
      - section: changeops
        key: spool_dir
      - section: callback_change_recorder
        key: spool_dir
  spool_fallback_dir:
    description:
      - Second spool location, tried when O(spool_dir) cannot be written (a read-only, full or immutable
        file system, which by default also holds the ledger).
      - Default, the platform's state directory outside C(~/.ansible) - C($XDG_STATE_HOME/changeops/spool)
        when E(XDG_STATE_HOME) is set, else C(/var/lib/changeops/spool) for root and
        C(~/.local/state/changeops/spool) for other users.
    type: path
    env:
      - name: CHANGEOPS_SPOOL_FALLBACK_DIR
    ini:
      - section: changeops
        key: spool_fallback_dir
      - section: callback_change_recorder
        key: spool_fallback_dir
  on_record_failure:
    description:
      - What a run does when its record cannot be kept, because neither the system of record nor any spool
        location takes its entries.
      - V(warn) - the run goes on; the entries are held in memory and retried; whatever is still held at
        the end of the run is lost, and a warning at the end says how many entries of which run, and a
        C(run.incomplete) marker is recorded at the next opportunity.
      - V(fail) - no record, no change. Before each task, the recorder waits until the record so far is
        durable (in the ledger or a spool file); when it is not, the run stops before the task starts on
        any host and exits with status 1, and a run whose end cannot be kept exits with status 1. This
        costs one ledger transaction per task.
      - Any other value stops the run before its first task, saying so - a typo in a record policy never
        leaves a run unrecorded (the values are checked by the recorder, not by Ansible, which would only
        skip loading the callback).
    type: str
    default: warn
    env:
      - name: CHANGEOPS_ON_RECORD_FAILURE
    ini:
      - section: changeops
        key: on_record_failure
      - section: callback_change_recorder
        key: on_record_failure
  redact_keys:
    description:
      - Extra key name patterns whose values are redacted anywhere in results and diffs, added to the
        built-in ones (C(password), C(passwd), C(secret), C(token), C(api_key), C(private_key) and others).
      - Matching is case-insensitive and by substring; C(_) in a pattern also matches C(-) or nothing.
    type: list
    elements: str
    default: []
    env:
      - name: CHANGEOPS_REDACT_KEYS
    ini:
      - section: changeops
        key: redact_keys
      - section: callback_change_recorder
        key: redact_keys
  redact_patterns_file:
    description:
      - A YAML file of your own secret detectors, added to the built-in catalogue (see the detector table in
        the collection's C(docs/recorder.md)). It holds a list of entries with C(name), C(pattern) (a Python
        regular expression; with a group named C(secret) only that group is replaced), optional
        C(description) and C(ignore_case).
      - Each pattern must be linear like the built-in ones. It must start at a boundary (C(^), C(\b) or a negative
        lookbehind) and use only possessive (C(++), C(*+)) or bounded repetitions. Otherwise it is refused.
      - When the file cannot be loaded the run is still recorded, with a warning, but every recorded string
        of its results is replaced (fail closed), so a secret your detectors were meant to catch is never
        stored.
    type: path
    env:
      - name: CHANGEOPS_REDACT_PATTERNS_FILE
    ini:
      - section: changeops
        key: redact_patterns_file
      - section: callback_change_recorder
        key: redact_patterns_file
  secret_vars:
    description:
      - Names of variables whose values are secrets wherever they come from (C(lookup('env')), a secrets
        manager lookup, C(set_fact), a registered result). Their values are redacted in every form, like
        vault values.
      - Their values are looked up on the controller for each host, before its first recorded result of a
        play and again after a result that sets facts; a result registered under one of these names has
        its output (C(stdout), C(content)...) redacted in that result too. This costs a variable look-up
        per host and play, and runs the variables' lookups once more.
    type: list
    elements: str
    default: []
    env:
      - name: CHANGEOPS_SECRET_VARS
    ini:
      - section: changeops
        key: secret_vars
      - section: callback_change_recorder
        key: secret_vars
  batch_size:
    description: Most entries appended in one transaction; a full batch is written at once.
    type: int
    default: 200
    env:
      - name: CHANGEOPS_RECORDER_BATCH_SIZE
    ini:
      - section: callback_change_recorder
        key: batch_size
  flush_interval:
    description:
      - Seconds an entry may wait in memory before its batch is written, so that a run killed with
        C(kill -9) loses at most this much.
    type: float
    default: 1.0
    env:
      - name: CHANGEOPS_RECORDER_FLUSH_INTERVAL
    ini:
      - section: callback_change_recorder
        key: flush_interval
  flush_timeout:
    description:
      - Seconds the end of the run waits for the final write to the system of record.
      - When it expires, what was not written goes to the spool, so nothing is lost. The run then
        ends; the run that replays the spool makes this run's CMDB links and closes its change requests
        (see O(close_change_requests)).
    type: float
    default: 60.0
    env:
      - name: CHANGEOPS_RECORDER_FLUSH_TIMEOUT
    ini:
      - section: callback_change_recorder
        key: flush_timeout
  spool_retry_interval:
    description: Seconds between attempts to replay the spool into the system of record during a run.
    type: float
    default: 10.0
    env:
      - name: CHANGEOPS_RECORDER_SPOOL_RETRY_INTERVAL
    ini:
      - section: callback_change_recorder
        key: spool_retry_interval
  max_output_chars:
    description:
      - Longest recorded C(msg), C(stdout), C(stderr) or other result string; longer ones are
        truncated, and the recorded value says how many characters were left out.
    type: int
    default: 2000
    env:
      - name: CHANGEOPS_RECORDER_MAX_OUTPUT_CHARS
    ini:
      - section: callback_change_recorder
        key: max_output_chars
  record_diffs:
    description:
      - Record the (redacted) diffs of tasks that run in diff mode (C(--diff) or the C(diff) keyword).
    type: bool
    default: true
    env:
      - name: CHANGEOPS_RECORDER_RECORD_DIFFS
    ini:
      - section: callback_change_recorder
        key: record_diffs
  max_diff_chars:
    description: Longest recorded C(before) or C(after) text of one diff; longer ones are truncated.
    type: int
    default: 20000
    env:
      - name: CHANGEOPS_RECORDER_MAX_DIFF_CHARS
    ini:
      - section: callback_change_recorder
        key: max_diff_chars
notes:
  - The run id is exported to the controller's environment as E(CHANGEOPS_RUN_ID) at playbook start,
    so the collection's modules can tie their own records to the run.
  - Extra-var values are treated as secrets. Every occurrence of one (4 characters or longer) is
    replaced in recorded output, and only extra-var names are recorded.
  - Ad-hoc C(ansible) commands are recorded, as change events of kind C(adhoc), when callbacks are enabled for
    them - C(bin_ansible_callbacks = true) in the C([defaults]) section of C(ansible.cfg), or
    E(ANSIBLE_LOAD_CALLBACK_PLUGINS=1). E(CHANGEOPS_CHANGE_REQUEST) or E(CHANGEOPS_EMERGENCY) name what
    authorises one; it is checked like the change gate checks it.
seealso:
  - module: changeops.itsm.change_event_info
  - module: changeops.itsm.ledger_verify
"""

EXAMPLES = r"""
# ansible.cfg: record every run in the default ledger (~/.ansible/changeops/ledger.sqlite)
# [defaults]
# callbacks_enabled = changeops.itsm.change_recorder

# ansible.cfg: a shared ledger file, extra secret keys, smaller output excerpts
# [changeops]
# sqlite_path = /srv/changeops/ledger.sqlite
# redact_keys = ldap_bind, x_vendor_auth
# redact_patterns_file = /etc/ansible/changeops-detectors.yml
# secret_vars = db_password, api_token
# [callback_change_recorder]
# max_output_chars = 500
"""

import atexit
import os
import signal
import threading
import time
import uuid

from ansible import context
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.callback import CallbackBase
from ansible.release import __version__ as ansible_version

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import (
    BACKEND_OPTIONS,
    describe,
    resolve_backend_config,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.redaction import Redactor, load_detector_file
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import load_backend
from ansible_collections.changeops.itsm.plugins.plugin_utils.ledger_location import warn_if_new_ledger
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import adhoc, runinfo, summary
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.decryption import DecryptionWatch
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.durability import RecordGuard
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.links import (
    IdentificationRules,
    RunContext,
    changes_host,
    is_register_host,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.secret_vars import SecretVars
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import target_key
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool_locations import spool_chain
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vars_files import VarsFiles
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vault import (
    collect_plain_values,
    collect_vault_secrets,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.writer import (
    PREFIX,
    RecorderWriter,
    entry_document,
)

RUN_ID_ENV = "CHANGEOPS_RUN_ID"


def status_failed(raw):
    return bool(raw.get("failed") or raw.get("unreachable"))


def _iso(moment):
    import datetime

    return format_time(datetime.datetime.fromtimestamp(moment, datetime.timezone.utc))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "changeops.itsm.change_recorder"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display)
        self._writer = None
        self._guard = None
        self._run_id = None
        self._redactor = None
        self._decryptions = None
        self._secret_vars = SecretVars((), None)
        self._started_at = None
        self._run_started_queued = False
        self._finished = False
        self._owner_pid = os.getpid()
        self._playbooks = []
        # an ad-hoc command ({module, pattern, args}), or None for a playbook run
        self._adhoc = None
        self._adhoc_authorised = False
        self._stats_seen = 0
        self._tasks_since_stats = 0
        self._play_id = None
        # batches started per play (a play with serial starts once per batch, same play id)
        self._play_batches = {}
        self._loader = None
        self._variable_manager = None
        self._play = None
        # loader cache keys already walked; kept apart from the vars_files this callback read itself, which
        # are never in that cache (the early exit in _scan_loaded_files compares the two sizes)
        self._scanned_cache_keys = set()
        self._vars_files = None
        self._templated_vars_files = False
        self._host_vars_scanned = set()
        self._seen_secret_containers = set()
        self._inventory_scanned = False
        self._starts = {}
        self._item_marks = {}
        self._item_counters = {}
        self._last_stats = None
        self._task_infos = {}
        self._changed_hosts = set()
        self._host_hints = {}
        self._identification = IdentificationRules()
        self._previous_sigterm = None
        self._diff_mode = False
        self._check_mode = False

    # ------------------------------------------------------------------
    # options
    # ------------------------------------------------------------------
    def _options_dict(self):
        # Ansible keeps a plugin's resolved options in _plugin_options; post-run hooks read theirs from here
        options = dict(getattr(self, "_plugin_options", None) or {})
        for name in BACKEND_OPTIONS:
            options.setdefault(name, self.get_option(name))
        # where each came from (an ansible.cfg path, "env: NAME", "default"): relative paths from a file are its
        options["_origins"] = dict(getattr(self, "_origins", None) or {})
        return options

    def _backend_config(self):
        return resolve_backend_config(params={name: self.get_option(name) for name in BACKEND_OPTIONS})

    # ------------------------------------------------------------------
    # run lifecycle
    # ------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        if self._run_id is None and not self.disabled:
            self._start_run(playbook)

    def _start_run(self, playbook):
        try:
            config = self._backend_config()
        except ChangeopsError as exc:
            self._display.warning(PREFIX + "not recording this run: %s" % exc)
            self.disabled = True
            return
        # before the writer opens (and so creates) the ledger: a new one next to others splits the audit trail
        warn_if_new_ledger(config, self._display.warning)
        self._run_id = uuid.uuid4().hex
        # set before the first task forks a worker, so action plugins inherit it
        os.environ[RUN_ID_ENV] = self._run_id
        self._started_at = utc_now()
        self._redactor = self._build_redactor()
        # before the first worker is forked: workers inherit the wrapped vault decryption
        self._decryptions = DecryptionWatch(self._redactor.add_known_secret).start()
        self._secret_vars = SecretVars(self.get_option("secret_vars"), self._redactor.add_known_secret)
        self._vars_files = VarsFiles(self._redactor.add_known_secret)
        cli = context.CLIARGS
        self._check_mode = bool(cli.get("check"))
        self._diff_mode = bool(cli.get("diff"))
        if adhoc.is_adhoc(playbook):
            # its "args" is the host pattern, not playbooks; described once the play's secrets are known
            self._adhoc = {}
        else:
            self._playbooks = [os.path.abspath(to_text(path)) for path in (cli.get("args") or ())]
            if not self._playbooks and getattr(playbook, "_file_name", None):
                self._playbooks = [os.path.abspath(to_text(playbook._file_name))]
        try:
            # Import the backend (psycopg for PostgreSQL) here, on the main thread: a
            # worker forked while the writer thread is halfway through that import
            # inherits the import lock held for ever and hangs.
            load_backend(config)
        except ChangeopsError:
            pass  # the writer meets the same error when it opens the backend, and spools
        self._writer = RecorderWriter(
            config,
            spool_chain(self.get_option("spool_dir"), target_key(config), describe(config),
                        fallback_dir=self.get_option("spool_fallback_dir")),
            self._display,
            options=self._options_dict(),
            batch_size=self.get_option("batch_size"),
            flush_interval=self.get_option("flush_interval"),
            retry_interval=self.get_option("spool_retry_interval"),
        )
        self._writer.start()
        self._guard = RecordGuard(self._writer, self.get_option("on_record_failure"), self.get_option("flush_timeout"),
                                  self._display)
        atexit.register(self._at_exit)
        self._install_sigterm_handler()

    def _build_redactor(self):
        """The run's redactor: the catalogue, ``redact_keys`` and the user's detectors. A detector file that
        cannot be loaded censors every recorded string (fail closed) rather than let its secrets through."""
        censor = False
        try:
            user_detectors = load_detector_file(self.get_option("redact_patterns_file"))
        except ChangeopsError as exc:
            self._display.warning(PREFIX + "%s; every recorded string of this run's results is replaced instead"
                                  % exc)
            user_detectors, censor = [], True
        return Redactor(extra_key_patterns=self.get_option("redact_keys") or (), user_detectors=user_detectors,
                        censor_values=censor)

    def _queue_run_started(self):
        if self._run_started_queued:
            return
        self._run_started_queued = True
        cli = context.CLIARGS
        extra_vars = getattr(self._variable_manager, "extra_vars", None) or {}
        inventory = getattr(self._variable_manager, "_inventory", None)
        sources = getattr(inventory, "_sources", None) or cli.get("inventory") or []
        data = {
            "run_id": self._run_id,
            "started_at": self._started_at,
            "pid": self._owner_pid,
            "playbooks": list(self._playbooks),
            "ansible_version": ansible_version,
            "check_mode": self._check_mode,
            "diff_mode": self._diff_mode,
            "limit": self._redactor.redact_string(to_text(cli["subset"])) if cli.get("subset") else None,
            "tags": sorted(to_text(tag) for tag in (cli.get("tags") or ())),
            "skip_tags": sorted(to_text(tag) for tag in (cli.get("skip_tags") or ())),
            "extra_var_names": sorted(to_text(name) for name in extra_vars),
            "inventory": [self._redactor.redact_string(to_text(source)) for source in sources],
            "forks": cli.get("forks"),
            "become": bool(cli.get("become")),
            "verbosity": cli.get("verbosity", 0),
            "kind": "playbook",
        }
        origin = runinfo.awx_origin(extra_vars, os.environ)
        if origin:
            data["origin"] = origin  # the AWX/AAP job that ran the playbook (job, template, who launched it)
        if self._adhoc is not None:
            self._adhoc = adhoc.describe(cli, self._redactor)
            data.update(kind=adhoc.KIND, adhoc=self._adhoc)
        self._writer.put_run_started(entry_document("run.started", self._run_id, data, at=self._started_at))

    def v2_playbook_on_play_start(self, play):
        if self._writer is None:
            return
        self._variable_manager = getattr(play, "_variable_manager", None) or self._variable_manager
        self._loader = getattr(play, "_loader", None) or self._loader
        self._play = play
        self._host_vars_scanned = set()
        self._secret_vars.new_play()
        self._collect_run_secrets(play)
        self._queue_run_started()
        self._play_id = play._uuid
        inventory = getattr(self._variable_manager, "_inventory", None)
        try:
            hosts = [host.name for host in inventory.get_hosts(play.hosts)] if inventory is not None else []
        except Exception:  # pylint: disable=broad-except
            hosts = []
        pattern = play.hosts
        # with serial, Ansible starts the play once per batch and the inventory holds that batch only:
        # each batch is one run.play entry, which the change event merges into the play's hosts
        self._play_batches[play._uuid] = self._play_batches.get(play._uuid, 0) + 1
        self._writer.put(entry_document("run.play", self._run_id, {
            "run_id": self._run_id,
            "play_id": play._uuid,
            "batch": self._play_batches[play._uuid],
            "name": self._redactor.redact_string(to_text(play.get_name())),
            "pattern": [to_text(p) for p in pattern] if isinstance(pattern, (list, tuple)) else to_text(pattern),
            "hosts": hosts,
            "roles": [role.get_name() for role in getattr(play, "roles", None) or []],
            "tags": sorted(to_text(tag) for tag in (play.tags or [])),
            "strategy": to_text(play.strategy) if getattr(play, "strategy", None) else None,
            "started_at": utc_now(),
        }))
        if self._adhoc and not self._adhoc_authorised:
            # before its one task starts: the change request or emergency the operator named, if any
            self._adhoc_authorised = True
            adhoc.authorise(play, self._adhoc, hosts, self._run_id, self._backend_config(), self._check_mode,
                            self._writer.put, self._display)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_started(task)

    def _task_started(self, task):
        if self._writer is None:
            return
        self._tasks_since_stats += 1
        try:
            collect_vault_secrets(task.get_vars(), self._redactor.add_known_secret)
        except Exception:  # pylint: disable=broad-except
            pass
        self._scan_loaded_files()
        if self._guard.strict:
            # on_record_failure=fail: no host starts this task unless the record so far is durable
            self._guard.before_task(self._redactor.redact_string(to_text(task.get_name())))

    def v2_playbook_on_stats(self, stats):
        if self._writer is None or self._finished:
            return
        self._stats_seen += 1
        self._tasks_since_stats = 0
        host_stats = {host: stats.summarize(host) for host in sorted(stats.processed)}
        if self._stats_seen < len(self._playbooks):
            # more playbooks follow in this run: write what we have, do not wait
            self._last_stats = host_stats
            self._writer.request_flush()
            return
        self._finish_run(self._outcome(host_stats), host_stats)
        self._guard.after_run()

    @staticmethod
    def _outcome(host_stats):
        failed = any(counts.get("failures") or counts.get("unreachable") for counts in host_stats.values())
        return "failed" if failed else "successful"

    def _finish_run(self, outcome, host_stats=None, interrupted_reason=None, from_signal=False):
        if self._finished or self._writer is None:
            return
        self._finished = True
        if self._decryptions is not None:
            self._decryptions.close()
        self._queue_run_started()
        data = {"run_id": self._run_id, "ended_at": utc_now(), "stats": host_stats or {}}
        if interrupted_reason:
            data["reason"] = interrupted_reason
            end = entry_document("run.interrupted", self._run_id, data)
        else:
            data["outcome"] = outcome
            end = entry_document("run.finished", self._run_id, data)
        # the hosts' facts (the fact cache may be a file or a network cache) are read by the writer
        changed = dict((host, dict(self._host_hints.get(host) or {})) for host in self._changed_hosts)
        self._writer.finish(self._run_id, changed, self.get_option("flush_timeout"), wake=not from_signal, end=end,
                            context=RunContext(self._variable_manager, self._identification))

    def _at_exit(self):
        if os.getpid() != self._owner_pid or self._finished:
            return
        last_stats = self._last_stats
        if last_stats is not None and not self._tasks_since_stats:
            # ansible-playbook stops running further playbooks after one whose hosts failed
            self._finish_run("failed", last_stats)
        else:
            reason = self._guard.stopped or (
                "ansible-playbook exited before the end of the run (interrupted or a fatal error)")
            self._finish_run(None, last_stats, interrupted_reason=reason)

    def _install_sigterm_handler(self):
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous_sigterm = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):
            self._previous_sigterm = None

    def _on_sigterm(self, signum, frame):
        if os.getpid() == self._owner_pid:
            self._finish_run(None, self._last_stats,
                             interrupted_reason="ansible-playbook received SIGTERM", from_signal=True)
        previous = self._previous_sigterm
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    # ------------------------------------------------------------------
    # secrets that must never be recorded
    # ------------------------------------------------------------------
    def _collect_run_secrets(self, play):
        add = self._redactor.add_known_secret
        extra_vars = getattr(self._variable_manager, "extra_vars", None)
        if extra_vars:
            # every extra var value counts as a secret, except the job metadata AWX passes (recorded as the origin)
            collect_plain_values({k: v for k, v in extra_vars.items() if not runinfo.is_awx_metadata(k)}, add)
        seen = self._seen_secret_containers
        try:
            play_vars = play.get_vars()
            collect_vault_secrets(play_vars, add, seen)
            for prompt in getattr(play, "vars_prompt", None) or []:
                # private prompts (the default) ask for passwords
                if isinstance(prompt, dict) and prompt.get("private", True) and prompt.get("name") in play_vars:
                    collect_plain_values(play_vars[prompt["name"]], add)
            for role in getattr(play, "roles", None) or []:
                collect_vault_secrets(role.get_default_vars(), add, seen)
                collect_vault_secrets(role.get_vars(include_params=False), add, seen)
        except Exception:  # pylint: disable=broad-except
            pass
        self._collect_vars_files(play)
        self._collect_inventory_secrets()
        self._scan_loaded_files()

    def _collect_vars_files(self, play):
        """vars_files with inline ``!vault`` values: the loader does not cache those, so read them once.

        A name with a template (``vars/{{ site }}.yml``) can name another file for each host: those are
        found per host (:meth:`_collect_host_play_secrets`).
        """
        self._templated_vars_files = False
        loader = self._loader
        if loader is None:
            return
        for item in play.get_vars_files() or []:
            for name in item if isinstance(item, list) else [item]:
                name = to_text(name)
                if "{{" in name or "{%" in name:
                    self._templated_vars_files = True
                    continue
                try:
                    found = loader.path_dwim_relative_stack(play.get_search_path(), "vars", name)
                    self._vars_files.load(loader, found, trusted_as_template=True)
                except Exception:  # pylint: disable=broad-except
                    continue

    def _collect_host_play_secrets(self, host):
        """Vault values of the vars_files a template names for this host.

        Ansible templates and reads those files for every host and task, and nothing else would ever
        see an inline ``!vault`` value in them. Asked once per host and play, and again after a result
        that set facts (which may make a template name another file); each file is parsed once
        (``vars_files.VarsFiles``). Runs before the host's task is executed, so its result is already
        redacted with these secrets.
        """
        self._host_vars_scanned.add(host.get_name())
        try:
            self._vars_files.scan_host(self._variable_manager, self._play, host)
        except Exception:  # pylint: disable=broad-except
            pass

    def _collect_inventory_secrets(self):
        inventory = getattr(self._variable_manager, "_inventory", None)
        if inventory is None:
            return
        add = self._redactor.add_known_secret
        try:
            for host in list(inventory.hosts.values()):
                collect_vault_secrets(host.vars, add)
            for group in list(inventory.groups.values()):
                collect_vault_secrets(group.vars, add)
        except Exception:  # pylint: disable=broad-except
            pass

    def _collect_included_vars(self, host):
        """Vault values include_vars loaded in a worker: the strategy put them in the host's vars cache
        before this result reached the callback, so later results that echo them are redacted."""
        cache = getattr(self._variable_manager, "_vars_cache", None) or {}
        try:
            collect_vault_secrets(cache.get(host), self._redactor.add_known_secret)
        except Exception:  # pylint: disable=broad-except
            pass

    def _scan_loaded_files(self):
        """Walk files the loader parsed since last time (group_vars, host_vars, roles, includes).

        The loader only ever adds keys to its cache, so an unchanged size means nothing new to walk.
        """
        cache = getattr(self._loader, "_FILE_CACHE", None)
        if not cache or len(cache) <= len(self._scanned_cache_keys):
            return
        for path in list(cache):
            if path in self._scanned_cache_keys:
                continue
            self._scanned_cache_keys.add(path)
            try:
                collect_vault_secrets(cache[path], self._redactor.add_known_secret)
            except Exception:  # pylint: disable=broad-except
                pass

    # ------------------------------------------------------------------
    # results
    # ------------------------------------------------------------------
    def v2_runner_on_start(self, host, task):
        if self._writer is not None:
            now = time.time()
            key = (host.get_name(), task._uuid)
            self._starts[key] = now
            self._item_marks.pop(key, None)
            if self._templated_vars_files and key[0] not in self._host_vars_scanned:
                self._collect_host_play_secrets(host)

    def v2_runner_on_ok(self, result):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record("failed", result, ignored=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._record("unreachable", result)

    def v2_runner_item_on_ok(self, result):
        self._record("ok", result, item=True)

    def v2_runner_item_on_failed(self, result):
        self._record("failed", result, item=True)

    def v2_runner_item_on_skipped(self, result):
        self._record("skipped", result, item=True)

    @staticmethod
    def _raw(result):
        # the tagged copy (same censoring as ``result.result``) still shows which values came from vault
        raw = getattr(result, "_return_data", None)
        if isinstance(raw, dict):
            return raw
        return result._result

    def _task_info(self, task, result, check_mode):
        key = (task._uuid, check_mode)
        info = self._task_infos.get(key)
        name = getattr(result, "task_name", None)
        if info is None or (name and info["name"] != self._redactor.redact_string(to_text(name))):
            info = summary.task_info(task, self._redactor, name=name, check_mode=check_mode)
            self._task_infos[key] = info
        elif info["action"] != summary.action_of(task, result):
            info = dict(info, action=summary.action_of(task, result))
            self._task_infos[key] = info
        return info

    def _record(self, event, result, item=False, ignored=False):
        if self._writer is None or self._finished:
            return
        try:
            self._record_result(event, result, item, ignored)
        except Exception as exc:  # pylint: disable=broad-except
            # a result we cannot summarise is still recorded, without its content
            self._display.warning(PREFIX + "could not summarise a result (%s: %s); recorded its status only" % (
                type(exc).__name__, exc))
            self._record_minimal(event, result, item)

    def _record_result(self, event, result, item, ignored):
        task = result._task
        host = result._host.get_name()
        key = (host, task._uuid)
        now = time.time()
        raw = self._raw(result)
        self._scan_loaded_files()
        # vault files a worker decrypted for this result, and the user's secret_vars, before anything is summarised
        self._decryptions.sync()
        if self._secret_vars:
            self._secret_vars.before_result(self._variable_manager, self._loader, self._play, result._host, task, raw)
        censored = summary.is_censored(raw, task)
        if item:
            started = self._item_marks.get(key) or self._starts.get(key) or now
            self._item_marks[key] = now
            index = self._item_counters_next(key)
            item_value = {"index": index, "label": summary.item_label(raw, self._redactor, censored)}
        else:
            started = self._starts.pop(key, None) or now
            self._item_marks.pop(key, None)
            self._item_counters.pop(key, None)
            item_value = None
        status = summary.status_of(event, raw)
        check_mode = summary.check_mode_of(task, result, self._check_mode)
        info = self._task_info(task, result, check_mode)
        if info["action"].rsplit(".", 1)[-1] == "include_vars":
            self._collect_included_vars(host)
        if raw.get("ansible_facts"):
            # a fact may name another vars_file for this host from its next task on (vars_files templates
            # see facts, not registered values nor include_vars)
            self._host_vars_scanned.discard(host)
        data = {
            "run_id": self._run_id,
            "play_id": self._play_id,
            "task": info,
            "host": host,
            "item": item_value,
            "status": status,
            "changed": bool(raw.get("changed")) and status != "skipped",
            "started_at": _iso(started),
            "ended_at": _iso(now),
            "duration_ms": int(round((now - started) * 1000)),
            "result": summary.summarise_result(raw, self._redactor, self.get_option("max_output_chars"), censored),
        }
        if ignored:
            data["ignored"] = True
        delegated = (raw.get("_ansible_delegated_vars") or {}).get("ansible_host")
        if delegated:
            data["delegated_to"] = to_text(delegated)
        if not censored and self.get_option("record_diffs") and "diff" in raw and (
                self._diff_mode or getattr(task, "diff", False)):
            diffs = summary.summarise_diff(raw, self._redactor, self.get_option("max_diff_chars"))
            if diffs:
                data["diff"] = diffs
        if changes_host(data):
            # the rule the change event's authorisation applies (a check-mode "changed" is a prediction)
            self._changed_hosts.add(host)
        if not item:
            self._note_host_identity(host, task, info["action"], raw, censored)
        self._writer.put(entry_document("run.result", self._run_id, data))

    def _note_host_identity(self, host, task, action, raw, censored):
        """register_host's answer ties ``host`` to its CI: keep the ``ci_id`` it returned for the links, and
        how its arguments identify hosts, for the changed hosts it did not run for."""
        if not is_register_host(action):
            return
        self._identification.note_task(task._uuid, getattr(task, "args", None))
        if not censored and not status_failed(raw) and raw.get("ci_id"):
            self._host_hints.setdefault(host, {})["ci_id"] = to_text(raw["ci_id"])

    def _item_counters_next(self, key):
        self._item_counters[key] = self._item_counters.get(key, -1) + 1
        return self._item_counters[key]

    def _record_minimal(self, event, result, item):
        try:
            task = result._task
            host = result._host.get_name()
            self._writer.put(entry_document("run.result", self._run_id, {
                "run_id": self._run_id, "play_id": self._play_id,
                "task": {"uuid": task._uuid, "name": None, "action": summary.action_of(task), "path": None,
                         "tags": [], "role": None, "handler": False,
                         "check_mode": summary.check_mode_of(task, result, self._check_mode)},
                "host": host, "item": {"index": None, "label": None} if item else None,
                "status": event, "changed": False, "started_at": None, "ended_at": utc_now(),
                "duration_ms": None, "result": {"censored": "the recorder could not summarise this result"},
            }))
        except Exception:  # pylint: disable=broad-except
            pass
