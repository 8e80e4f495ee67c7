/* changeops.itsm change register: list, filters, change pages and exports, all client-side.
 * Data comes from the JSON blocks in this file; every value is inserted with textContent, never as
 * markup, so nothing recorded in the ledger can inject HTML. Detail chunks are parsed on demand. */
(function () {
  'use strict';

  var index = JSON.parse(document.getElementById('register-index').textContent);
  var rows = index.rows;
  var byId = Object.create(null);
  rows.forEach(function (row) { byId[row.run_id] = row; });
  var chunkCache = Object.create(null);
  var ciData = null;

  var AUTH_LABELS = {
    'standard': 'Standard', 'change-request': 'Change request', 'emergency': 'Emergency',
    'unauthorised': 'Unauthorised', 'denied': 'Denied', 'dry-run': 'Dry run', 'record-only': 'Record only',
    'no-change': 'No change', 'pending': 'Pending'
  };
  var OUTCOME_BADGES = { successful: 'badge-ok', failed: 'badge-bad', denied: 'badge-denied badge-outcome', interrupted: 'badge-warn', running: 'badge-plain' };
  var AUTH_ORDER = { 'unauthorised': 0, 'emergency': 1, 'denied': 2, 'change-request': 3, 'standard': 4, 'pending': 5,
    'record-only': 6, 'no-change': 7, 'dry-run': 8 };

  var state = {
    q: '', from: '', to: '', host: '', outcome: '', auth: '', env: '', review: '',
    dry: true, nochange: false, sort: 'started_at', dir: -1, page: 1, size: 50
  };
  var reviewPage = 1;
  var REVIEW_PAGE_SIZE = 50;
  var current = [];

  // ---------------------------------------------------------------- helpers
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, key) || attrs[key] === null || attrs[key] === undefined) { continue; }
        if (key === 'text') { node.textContent = attrs[key]; }
        else if (key === 'className') { node.className = attrs[key]; }
        else { node.setAttribute(key, attrs[key]); }
      }
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) { return; }
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  function basename(path) { return path ? path.replace(/^.*\//, '') : ''; }
  function dirname(path) { return path && path.indexOf('/') >= 0 ? path.replace(/\/[^\/]*$/, '') : ''; }

  function fmtTime(iso) { return iso ? iso.slice(0, 19).replace('T', ' ') + ' UTC' : '—'; }

  function duration(start, end) {
    if (!start || !end) { return '—'; }
    var seconds = Math.max(0, Math.round((Date.parse(end) - Date.parse(start)) / 1000));
    if (seconds < 60) { return seconds + ' s'; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + ' min ' + (seconds % 60) + ' s'; }
    return Math.floor(seconds / 3600) + ' h ' + Math.floor((seconds % 3600) / 60) + ' min';
  }

  function badge(text, cls) { return el('span', { className: 'badge ' + cls, text: text }); }

  function outcomeBadge(row) { return badge(row.outcome || 'unknown', OUTCOME_BADGES[row.outcome] || 'badge-plain'); }

  function authText(row) {
    return row.authorisation_types.map(function (type) { return AUTH_LABELS[type] || type; }).join(' + ');
  }

  function authCell(row) {
    var types = row.authorisation_types;
    var cls = 'badge-plain';
    if (types.indexOf('unauthorised') >= 0 || types.indexOf('incomplete') >= 0) { cls = 'badge-unauthorised'; }
    else if (types.indexOf('denied') >= 0) { cls = 'badge-denied'; }
    else if (types.indexOf('emergency') >= 0) { cls = 'badge-warn'; }
    else if (types.indexOf('dry-run') >= 0) { cls = 'badge-dry'; }
    else if (types.indexOf('standard') >= 0 || types.indexOf('change-request') >= 0) { cls = 'badge-ok'; }
    var nodes = [badge(authText(row), cls)];
    if (row.authorisation_ref) { nodes.push(el('span', { className: 'ref', text: row.authorisation_ref })); }
    return nodes;
  }

  function reviewText(row) {
    if (row.review_status === 'accepted') { return 'Accepted'; }
    if (row.review_status === 'follow-up') { return 'Follow-up needed'; }
    return row.awaiting_review ? 'Awaiting review' : 'Not needed';
  }

  function reviewBadge(row) {
    var cls = row.review_status === 'accepted' ? 'badge-ok' : row.review_status === 'follow-up' ? 'badge-warn'
      : row.awaiting_review ? 'badge-plain' : 'badge-plain';
    return badge(reviewText(row), cls);
  }

  // what ran: the playbook, or an ad-hoc command's module and host pattern
  function whatRan(row) {
    return row.kind === 'adhoc' && row.adhoc ? 'ad-hoc ' + row.adhoc.module + ' on ' + row.adhoc.pattern : row.playbook;
  }

  function searchText(row) {
    if (row._search === undefined) {
      row._search = [row.run_id, row.user, row.controller, whatRan(row), row.outcome, row.authorisation,
        authText(row), row.authorisation_ref || '', reviewText(row), row.environments.join(' '),
        row.hosts.join(' '), row.ci_names.join(' '), row.dry_run ? 'dry run check mode' : ''].join(' \u0001 ').toLowerCase();
      row._hosts = row.hosts.concat(row.ci_names).join('\u0001').toLowerCase();
    }
    return row._search;
  }

  // ---------------------------------------------------------------- filtering and sorting
  function matches(row) {
    if (state.from && (row.started_at || '').slice(0, 10) < state.from) { return false; }
    if (state.to && (row.started_at || '').slice(0, 10) > state.to) { return false; }
    if (state.outcome && row.outcome !== state.outcome) { return false; }
    if (state.auth) {
      if (row.authorisation_types.indexOf(state.auth) < 0) { return false; }
    } else {
      if (!state.dry && row.dry_run) { return false; }
      if (!state.nochange && row.outcome === 'successful' && row.authorisation === 'no-change') { return false; }
    }
    if (state.env && row.environments.indexOf(state.env) < 0) { return false; }
    if (state.review) {
      if (state.review === 'awaiting' ? !row.awaiting_review : row.review_status !== state.review) { return false; }
    }
    var text = searchText(row);
    if (state.host && row._hosts.indexOf(state.host) < 0) { return false; }
    if (state.q) {
      var terms = state.q.split(/\s+/);
      for (var i = 0; i < terms.length; i++) { if (terms[i] && text.indexOf(terms[i]) < 0) { return false; } }
    }
    return true;
  }

  function sortKey(row, key) {
    switch (key) {
      case 'hosts': return row.hosts.length;
      case 'environment': return row.environments.join(',');
      case 'authorisation': return AUTH_ORDER[row.authorisation_types[0]] === undefined ? 9 : AUTH_ORDER[row.authorisation_types[0]];
      case 'review': return reviewText(row);
      default: return row[key] === null || row[key] === undefined ? '' : String(row[key]).toLowerCase();
    }
  }

  function applyFilters() {
    var list = rows.filter(matches);
    var key = state.sort;
    var dir = state.dir;
    if (!(key === 'started_at' && dir === -1)) {   // rows already arrive newest first
      list = list.map(function (row, position) { return [sortKey(row, key), position, row]; });
      list.sort(function (a, b) {
        if (a[0] < b[0]) { return -dir; }
        if (a[0] > b[0]) { return dir; }
        return a[1] - b[1];
      });
      list = list.map(function (entry) { return entry[2]; });
    }
    current = list;
  }

  // ---------------------------------------------------------------- list rendering
  function hostsCell(row) {
    var count = row.hosts.length;
    if (!count) { return [el('span', { className: 'muted', text: '0' })]; }
    var label = count + (count === 1 ? ' host' : ' hosts');
    var extra = [];
    // changed = a change was made to the host (the register's definition, not Ansible's recap count)
    if (row.changed_hosts.length) { extra.push(row.changed_hosts.length + ' changed'); }
    if (row.predicted_hosts.length) { extra.push(row.predicted_hosts.length + ' would change'); }
    if (row.failed_hosts.length) { extra.push(row.failed_hosts.length + ' failed'); }
    if (extra.length) { label += ' (' + extra.join(', ') + ')'; }
    var items = row.hosts.map(function (host) {
      var notes = [];
      if (row.changed_hosts.indexOf(host) >= 0) { notes.push('changed'); }
      if (row.predicted_hosts.indexOf(host) >= 0) { notes.push('would change'); }
      if (row.failed_hosts.indexOf(host) >= 0) { notes.push('failed'); }
      return el('li', { text: host + (notes.length ? ' — ' + notes.join(', ') : '') });
    });
    return [el('details', { className: 'hosts' }, [el('summary', { text: label }), el('ul', null, items)])];
  }

  function rowElement(row) {
    var classes = [];
    if (row.dry_run) { classes.push('is-dry-run'); }
    if (row.authorisation_types.indexOf('unauthorised') >= 0) { classes.push('is-unauthorised'); }
    if (row.authorisation_types.indexOf('denied') >= 0) { classes.push('is-denied'); }
    var when = [el('a', { href: '#/change/' + encodeURIComponent(row.run_id), text: fmtTime(row.started_at),
      'aria-label': 'Change of ' + fmtTime(row.started_at) + ' by ' + (row.user || 'unknown') + ': ' + (whatRan(row) || '') })];
    if (row.dry_run) { when.push(' ', badge('DRY RUN', 'badge-dry')); }
    return el('tr', { className: classes.join(' ') || null, 'data-run-id': row.run_id }, [
      el('td', { className: 'when' }, when),
      el('td', null, [row.user || '—', row.controller ? el('span', { className: 'ref', text: row.controller }) : null]),
      row.kind === 'adhoc' && row.adhoc ? el('td', { className: 'playbook', title: whatRan(row) }, [badge('AD-HOC', 'badge-plain'),
        ' ' + row.adhoc.module, el('span', { className: 'ref', text: row.adhoc.pattern })])
        : el('td', { className: 'playbook', title: row.playbook || null }, [basename(row.playbook) || '—',
          dirname(row.playbook) ? el('span', { className: 'ref', text: dirname(row.playbook) }) : null]),
      el('td', { text: row.environments.join(', ') || '—' }),
      el('td', null, hostsCell(row)),
      el('td', null, [outcomeBadge(row)]),
      el('td', null, authCell(row)),
      el('td', null, [reviewBadge(row)])
    ]);
  }

  function fillBody(tbody, list, emptyText) {
    var fragment = document.createDocumentFragment();
    list.forEach(function (row) { fragment.appendChild(rowElement(row)); });
    if (!list.length) {
      fragment.appendChild(el('tr', null, [el('td', { colspan: '8', className: 'empty', text: emptyText })]));
    }
    tbody.replaceChildren(fragment);
  }

  function renderList() {
    var pages = Math.max(1, Math.ceil(current.length / state.size));
    state.page = Math.min(Math.max(1, state.page), pages);
    var start = (state.page - 1) * state.size;
    var slice = current.slice(start, start + state.size);
    fillBody($('rows'), slice, 'No change matches these filters.');
    $('result-count').textContent = current.length
      ? 'Showing ' + (start + 1) + '–' + (start + slice.length) + ' of ' + current.length + ' matching changes (' + rows.length + ' recorded)'
      : 'No matching changes (' + rows.length + ' recorded)';
    $('page-status').textContent = 'Page ' + state.page + ' of ' + pages;
    var pager = $('pager');
    pager.querySelector('[data-page="first"]').disabled = state.page <= 1;
    pager.querySelector('[data-page="prev"]').disabled = state.page <= 1;
    pager.querySelector('[data-page="next"]').disabled = state.page >= pages;
    pager.querySelector('[data-page="last"]').disabled = state.page >= pages;
    document.querySelectorAll('#changes thead th').forEach(function (th) {
      if (th.getAttribute('data-key') === state.sort) { th.setAttribute('aria-sort', state.dir < 0 ? 'descending' : 'ascending'); }
      else { th.removeAttribute('aria-sort'); }
    });
  }

  function refresh(keepPage) {
    if (!keepPage) { state.page = 1; }
    applyFilters();
    renderList();
  }

  function renderReview() {
    var list = index.awaiting_review.map(function (id) { return byId[id]; });
    var pages = Math.max(1, Math.ceil(list.length / REVIEW_PAGE_SIZE));
    reviewPage = Math.min(Math.max(1, reviewPage), pages);
    var start = (reviewPage - 1) * REVIEW_PAGE_SIZE;
    fillBody($('review-rows'), list.slice(start, start + REVIEW_PAGE_SIZE), 'Every change has been reviewed.');
    $('review-page-status').textContent = list.length ? 'Page ' + reviewPage + ' of ' + pages + ' (' + list.length + ' awaiting review)' : '';
    $('review-pager').querySelector('[data-page="prev"]').disabled = reviewPage <= 1;
    $('review-pager').querySelector('[data-page="next"]').disabled = reviewPage >= pages;
  }

  // ---------------------------------------------------------------- change page
  function chunk(number) {
    if (!chunkCache[number]) {
      var node = $('register-chunk-' + number);
      chunkCache[number] = node ? JSON.parse(node.textContent) : {};
    }
    return chunkCache[number];
  }

  function cis() {
    if (!ciData) { ciData = JSON.parse($('register-cis').textContent); }
    return ciData;
  }

  function summaryList(pairs) {
    var dl = el('dl', { className: 'summary' });
    pairs.forEach(function (pair) {
      if (pair[1] === null || pair[1] === undefined || pair[1] === '') { return; }
      dl.appendChild(el('dt', { text: pair[0] }));
      var value = pair[1];
      dl.appendChild(el('dd', null, [typeof value === 'object' && value.nodeType ? value : String(value)]));
    });
    return dl;
  }

  function table(caption, headers, bodyRows) {
    var head = el('tr', null, headers.map(function (header) { return el('th', { scope: 'col', text: header }); }));
    var body = el('tbody', null, bodyRows.map(function (cells) {
      return el('tr', null, cells.map(function (cell, position) {
        var content = Array.isArray(cell) ? cell : [cell === null || cell === undefined ? '—' : (cell.nodeType ? cell : String(cell))];
        return el(position === 0 ? 'th' : 'td', position === 0 ? { scope: 'row' } : null, content);
      }));
    }));
    // the section heading already says what the table is; the caption is for screen readers
    return el('div', { className: 'table-wrap' }, [el('table', null, [el('caption', { className: 'visually-hidden', text: caption }), el('thead', null, [head]), body])]);
  }

  function diffBlock(text) {
    var pre = el('pre', { className: 'diff', tabindex: '0', 'aria-label': 'Diff' });
    text.split('\n').forEach(function (line) {
      var cls = null;
      if (line.indexOf('+++') === 0 || line.indexOf('---') === 0) { cls = 'hunk'; }
      else if (line.charAt(0) === '+') { cls = 'add'; }
      else if (line.charAt(0) === '-') { cls = 'del'; }
      else if (line.indexOf('@@') === 0) { cls = 'hunk'; }
      pre.appendChild(cls ? el('span', { className: cls, text: line }) : document.createTextNode(line + '\n'));
    });
    return pre;
  }

  function section(title, id, children) {
    return el('section', { 'aria-labelledby': id }, [el('h3', { id: id, text: title })].concat(children));
  }

  function empty(text) { return el('p', { className: 'empty', text: text }); }

  function chainNote() {
    var verification = index.verification;
    if (!verification) { return el('p', { className: 'chain chain-unknown', text: 'The ledger chain was not verified when this register was generated.' }); }
    if (verification.valid && verification.projections_checked) {
      return el('p', { className: 'chain chain-ok', text: 'Verified: the ledger chain was intact at generation (' + verification.entries_checked + ' entries) and the records shown match it.' });
    }
    if (verification.valid) {
      return el('p', { className: 'chain chain-unknown', text: 'The ledger chain was intact at generation (' + verification.entries_checked + ' entries), but the records shown were not compared with it.' });
    }
    if (!verification.first_broken && !verification.anchor_mismatch) {
      return el('p', { className: 'chain chain-broken', text: 'Records shown DO NOT MATCH the ledger: ' + verification.summary });
    }
    var at = verification.first_broken ? ' at entry ' + verification.first_broken.seq : '';
    return el('p', { className: 'chain chain-broken', text: 'BROKEN' + at + ': ' + verification.summary });
  }

  function windowText(cr) {
    if (!cr || (!cr.planned_start && !cr.planned_end)) { return 'no planned window'; }
    return fmtTime(cr.planned_start) + ' – ' + fmtTime(cr.planned_end) + (cr.timezone && cr.timezone !== 'UTC' ? ' (' + cr.timezone + ' request)' : '');
  }

  function approvalLine(approval, superseded) {
    var text = (approval.decision === 'rejected' ? 'Rejected by ' : 'Approved by ') + (approval.approver || 'unknown') +
      ' at ' + fmtTime(approval.at) + (approval.comment ? ': ' + approval.comment : '');
    if (superseded) { text += ' — withdrawn ' + fmtTime(approval.superseded_at) + (approval.superseded_because ? ' (' + approval.superseded_because + ')' : ''); }
    return el('li', { className: superseded ? 'muted' : null, text: text });
  }

  function approvalList(cr) {
    // a standard change is pre-approved by its template; every other type names who approved it and when, for the window shown
    var items = (cr.approvals || []).map(function (approval) { return approvalLine(approval, false); })
      .concat((cr.superseded_approvals || []).map(function (approval) { return approvalLine(approval, true); }));
    if (!items.length) { items.push(el('li', { text: cr.approval === 'pre-approved' ? 'Pre-approved (standard change template)' : 'Not approved (' + (cr.approval || 'not requested') + ')' })); }
    return el('ul', { className: 'reasons' }, items);
  }

  function signOff(row, detail) {
    var reviews = detail.reviews || [];
    var children = [];
    if (reviews.length) {
      children.push(table('Post-implementation reviews, newest first', ['Reviewed at', 'Reviewer', 'Outcome', 'Comment'],
        reviews.map(function (review) {
          return [fmtTime(review.reviewed_at), review.reviewer, review.outcome === 'accepted' ? 'Accepted' : 'Follow-up needed', review.comment || '—'];
        })));
    } else {
      children.push(el('p', { text: row.awaiting_review ? 'Not reviewed yet: this change is awaiting post-implementation review.'
        : row.dry_run ? 'No review needed: a dry run changes nothing.'
        : row.authorisation_types.indexOf('record-only') >= 0 ? 'No review needed: no host was changed, only the system of record.'
        : 'No review needed: nothing was changed.' }));
    }
    var snippet = ['- name: Sign off change ' + row.run_id, '  changeops.itsm.change_review:', '    run_id: ' + row.run_id,
      '    outcome: accepted            # or follow-up', '    reviewer: "Your Name"', '    comment: "What you checked"'].join('\n');
    children.push(el('details', null, [el('summary', { text: 'How to record a review' }),
      el('p', { text: 'Run this task (or ask your automation team to): the sign-off becomes a ledger entry and shows here once the register is regenerated.' }),
      el('pre', { className: 'wrap', tabindex: '0', text: snippet })]));
    return el('div', { className: 'signoff' }, children);
  }

  function renderChange(runId) {
    var view = $('change-view');
    var row = byId[runId];
    if (!row) {
      view.replaceChildren(el('p', { className: 'back' }, [el('a', { href: '#/', text: '← Back to all changes' })]),
        el('h2', { id: 'change-heading', tabindex: '-1', text: 'Change not found' }),
        empty('No change event ' + runId + ' is in this register.'));
      return;
    }
    var detail = chunk(row.chunk)[runId] || {};
    var run = detail.run || {};
    var badges = el('div', { className: 'change-badges' }, [outcomeBadge(row)].concat(row.outcome === 'denied' ? [] : authCell(row).slice(0, 1), [reviewBadge(row)],
      row.dry_run ? [badge('DRY RUN: check mode, nothing changed', 'badge-dry')] : []));
    var parts = [
      el('p', { className: 'back' }, [el('a', { href: '#/', text: '← Back to all changes' })]),
      el('h2', { id: 'change-heading', tabindex: '-1', text: (whatRan(row) || 'Playbook run') + ' — ' + fmtTime(row.started_at) }),
      badges
    ];
    var git = run.git || {};
    parts.push(el('div', { className: 'grid2' }, [
      section('Run', 'sec-run', [summaryList([
        ['Run id', el('code', { text: row.run_id })],
        ['Started', fmtTime(row.started_at)], ['Ended', fmtTime(row.ended_at)], ['Duration', duration(row.started_at, row.ended_at)],
        ['Who', row.user], ['Controller', row.controller],
        run.adhoc ? ['Ad-hoc command', 'ansible ' + run.adhoc.pattern + ' -m ' + run.adhoc.module + (run.adhoc.args ? ' -a ' + run.adhoc.args : '')]
          : ['Playbooks', (run.playbooks || [row.playbook]).join(', ')],
        ['Inventory', (run.inventory || []).join(', ')], ['Limit', run.limit], ['Tags', (run.tags || []).join(', ')],
        ['Skipped tags', (run.skip_tags || []).join(', ')], ['Extra variables (names)', (run.extra_var_names || []).join(', ')],
        ['Check mode', run.check_mode ? 'yes (dry run)' : 'no'], ['Diff mode', run.diff_mode ? 'yes' : 'no'],
        ['Git commit', git.commit ? git.commit + (git.dirty ? ' (uncommitted changes)' : '') : null],
        ['Ansible', run.ansible_version], ['Environment', row.environments.join(', ')],
        ['Interrupted because', run.reason],
        ['Record incomplete', run.record_lost ? run.record_lost.entries + ' entries were lost by the recorder' : null]
      ])]),
      section('Review', 'sec-review', [signOff(row, detail), chainNote()])
    ]));

    var gates = detail.gates || [];
    parts.push(section('Authorisation', 'sec-auth', [
      summaryList([['Decision', authText(row)], ['Reference', row.authorisation_ref]]),
      gates.length ? table('Gate decisions, one per play', ['Play', 'Decision', 'Type', 'Reference', 'Reasons'], gates.map(function (gate) {
        var reasons = (gate.reasons || []).slice();
        if (gate.justification) { reasons.push('Emergency declared' + (gate.declared_by ? ' by ' + gate.declared_by : '') + ': ' + gate.justification); }
        if (gate.change_request) {
          var seen = gate.change_request_at_decision;
          reasons.push('Change request ' + gate.change_request + (seen ? ' (when the gate decided: ' + [seen.state,
            'approval ' + (seen.approval || 'not requested'), 'window ' + windowText(seen)].join(', ') + ')' : ''));
        }
        if ((gate.protected_areas || []).length) { reasons.push('Touches protected areas: ' + gate.protected_areas.join(', ')); }
        (gate.freezes || []).forEach(function (freeze) { reasons.push('Change freeze: ' + freeze); });
        if (gate.policy) { reasons.push('Policy: ' + gate.policy); }
        if (gate.identities) { reasons.push('People: ' + gate.identities); }
        if (gate.review_required) { reasons.push('Post-implementation review required'); }
        return [gate.play || '—', gate.allowed ? badge('Allowed', 'badge-ok') : badge('Denied', 'badge-bad'), gate.type, gate.reference,
          [el('ul', { className: 'reasons' }, reasons.map(function (reason) { return el('li', { text: reason }); }))]];
      })) : empty(row.authorisation_types.indexOf('unauthorised') >= 0
        ? 'No gate allowed this change: it was made without authorisation.' : 'No gate decision was recorded for this run.'),
      (detail.change_requests || []).length ? el('h4', { text: 'Change requests' }) : null,
      (detail.change_requests || []).length ? table('Change requests', ['Number', 'State', 'Type', 'Description', 'Requested by', 'Planned window', 'Approval'],
        detail.change_requests.map(function (cr) {
          return [cr.number, cr.state, cr.type + (cr.template ? ' (' + cr.template + ')' : ''), cr.short_description,
            (cr.requested_by || cr.opened_by || '—') + (cr.requested_by && cr.opened_by && cr.requested_by !== cr.opened_by ? ' (raised by ' + cr.opened_by + ')' : ''),
            windowText(cr), [approvalList(cr)]];
        })) : null
    ]));

    var plays = detail.plays || [];
    parts.push(section('Plays', 'sec-plays', [plays.length ? table('Plays of this run', ['Play', 'Hosts pattern', 'Hosts', 'Roles'], plays.map(function (play) {
      return [play.name || '(unnamed play)', play.pattern, (play.hosts || []).join(', ') || '—', (play.roles || []).join(', ') || '—'];
    })) : empty('No play was recorded.')]));

    var hosts = detail.hosts || [];
    parts.push(section('Hosts', 'sec-hosts', hosts.length ? [table('Per-host changes and task counts',
      ['Host', 'Changes made', 'Recap: ok', 'Recap: changed', 'Recap: failed', 'Recap: unreachable', 'Recap: skipped'], hosts.map(function (host) {
        return [host.host, host.changes, host.ok, host.changed, host.failures, host.unreachable, host.skipped];
      })), el('p', { className: 'table-note', text: 'Changes made: the changes this run made to the host, each loop item counted, ' +
        'as everywhere in this register. The Recap columns are Ansible\u2019s PLAY RECAP, which counts tasks, and in "changed" also ' +
        'check-mode predictions and the collection\u2019s own writes to the system of record.' })] : [empty('No host results were recorded.')]));

    var failures = detail.failures || [];
    parts.push(section('Failures (' + failures.length + ')', 'sec-failures', failures.length ? [table('Failed or unreachable tasks', ['Host', 'Task', 'Item', 'Status', 'Message'],
      failures.map(function (failure) {
        return [failure.host, failure.task, failure.item, badge(failure.status, 'badge-bad'), [el('pre', { className: 'wrap', text: failure.message || '' })]];
      }))] : [empty('No task failed.')]));

    function changeTables(groups, noun, caption) {
      var out = [];
      groups.forEach(function (group) {
        out.push(el('h4', { text: group.host + ' (' + group.tasks.length + ' ' + noun + (group.tasks.length === 1 ? ')' : 's)') }));
        out.push(table(caption + ' ' + group.host, ['Task', 'Action', 'Item', 'Diff', 'Result'], group.tasks.map(function (task) {
          return [task.task + (task.handler ? ' (handler)' : ''), task.action, task.item,
            task.diff ? [el('details', { open: '' }, [el('summary', { text: 'Diff' }), diffBlock(task.diff)])] : '—',
            task.result ? [el('details', null, [el('summary', { text: 'Show result' }), el('pre', { className: 'wrap',
              text: typeof task.result === 'string' ? task.result : JSON.stringify(task.result, null, 2) })])] : '—'];
        })));
      });
      return out;
    }
    var changeParts = changeTables(detail.changes || [], 'change', 'Tasks that changed');
    var predicted = detail.predicted_changes || [];
    if (predicted.length) {
      changeParts.push(el('h4', { text: 'Predicted in check mode (nothing was changed)' }));
      changeParts = changeParts.concat(changeTables(predicted, 'predicted change', 'Tasks that would change'));
    }
    parts.push(section('Changes to hosts', 'sec-changes', changeParts.length ? changeParts
      : [empty(row.dry_run ? 'A dry run changes nothing.' : 'No task changed a host.')]));
    var recordChanges = detail.record_changes || [];
    if (recordChanges.length) {
      parts.push(section('Changes to the record (' + recordChanges.length + ')', 'sec-record', [
        el('p', { className: 'table-note', text: 'Writes of the collection\u2019s own modules to the system of record (CIs, evidence, change requests, reviews): no managed host was changed by them.' }),
        table('Tasks that changed the system of record', ['Task', 'Action', 'Host', 'Item'], recordChanges.map(function (task) {
          return [task.task, task.action, task.host, task.item];
        }))]));
    }

    var evidence = detail.evidence || [];
    var evidenceParts = [];
    evidence.forEach(function (record) {
      evidenceParts.push(el('h4', { text: (record.checklist || 'checklist') + (record.host ? ' on ' + record.host : '') + ': ' + (record.status || 'no status') }));
      if (record.summary !== null && record.summary !== undefined) {
        if (typeof record.summary === 'object') {
          evidenceParts.push(summaryList(Object.keys(record.summary).sort().map(function (key) {
            var value = record.summary[key];
            return [key, typeof value === 'object' ? JSON.stringify(value) : value];
          })));
        } else {
          evidenceParts.push(el('p', { text: String(record.summary) }));
        }
      }
      if ((record.controls || []).length) {
        // a service-scope document holds every host's controls: say whose each row is
        var perHost = record.controls.some(function (control) { return control.host; });
        evidenceParts.push(table('Per-control results of ' + (record.checklist || 'the checklist'),
          (perHost ? ['Host'] : []).concat(['Control', 'Title', 'Status', 'Observed', 'Expected', 'Detail']),
          record.controls.map(function (control) {
            var status = String(control.status || '');
            var cls = /^(pass|passed|ok|fixed|compliant)$/i.test(status) ? 'badge-ok'
              : /^(fail|failed|error|non-compliant)$/i.test(status) ? 'badge-bad' : 'badge-plain';
            return (perHost ? [control.host] : []).concat([control.id, control.title, badge(status || 'unknown', cls),
              control.observed, control.expected, control.detail]);
          })));
      } else if (record.document) {
        evidenceParts.push(el('pre', { className: 'wrap', tabindex: '0', text: record.document }));
      }
    });
    parts.push(section('Checklist evidence', 'sec-evidence', evidenceParts.length ? evidenceParts : [empty('No checklist evidence was recorded for this run.')]));

    var touched = detail.cis || [];
    parts.push(section('Configuration items touched', 'sec-cis', [touched.length ? table('CIs this run touched', ['CI', 'Class', 'Environment', 'Status', 'How'], touched.map(function (ci) {
      return [[el('a', { href: '#/ci/' + encodeURIComponent(ci.ci_id), text: ci.name || ci.ci_id })], ci['class'], ci.environment, ci.status, ci.via];
    })) : empty('No configuration item is linked to this run.')]));

    view.replaceChildren.apply(view, parts);
  }

  function renderCi(ciId) {
    var view = $('ci-view');
    var ci = cis()[ciId];
    var back = el('p', { className: 'back' }, [el('a', { href: '#/', text: '← Back to all changes' })]);
    if (!ci) {
      view.replaceChildren(back, el('h2', { id: 'ci-heading', tabindex: '-1', text: 'Configuration item not found' }));
      return;
    }
    var attributes = Object.keys(ci.attributes || {}).map(function (key) { return [key, ci.attributes[key]]; });
    var runs = (ci.runs || []).map(function (id) { return byId[id]; }).filter(Boolean);
    view.replaceChildren(back,
      el('h2', { id: 'ci-heading', tabindex: '-1', text: 'Configuration item ' + (ci.name || ci.ci_id) }),
      summaryList([['CI id', el('code', { text: ci.ci_id })], ['Class', ci['class']], ['Status', ci.status], ['Environment', ci.environment]].concat(attributes)),
      section('Changes that touched it (' + runs.length + ')', 'sec-ci-runs', [runs.length ? el('div', { className: 'table-wrap' }, [
        el('table', { className: 'changes' }, [el('caption', { text: 'Change events touching ' + (ci.name || ci.ci_id) }),
          el('thead', null, [el('tr', null, ['When', 'Who', 'Playbook', 'Environment', 'Hosts', 'Outcome', 'Authorisation', 'Review'].map(function (h) { return el('th', { scope: 'col', text: h }); }))]),
          el('tbody', null, runs.map(rowElement))])]) : empty('No change in this register touched it.')]),
      section('History', 'sec-ci-history', [(ci.history || []).length ? table('Ledger history of this CI, newest first' + (ci.history_truncated ? ' (' + ci.history_truncated + ' older entries not shown)' : ''),
        ['When', 'What', 'By', 'Run'], ci.history.map(function (item) {
          return [fmtTime(item.at), item.text, item.actor, item.run_id && byId[item.run_id]
            ? [el('a', { href: '#/change/' + encodeURIComponent(item.run_id), text: item.run_id })] : item.run_id];
        })) : empty('No history recorded.')])
    );
  }

  // ---------------------------------------------------------------- routing
  var views = ['list-view', 'review-view', 'change-view', 'ci-view'];
  var lastListFocus = null;

  function show(id) {
    views.forEach(function (view) { $(view).hidden = view !== id; });
    $('nav-all').setAttribute('aria-current', id === 'list-view' ? 'page' : 'false');
    $('nav-review').setAttribute('aria-current', id === 'review-view' ? 'page' : 'false');
  }

  function route() {
    var hash = decodeURIComponent(location.hash.replace(/^#/, ''));
    var match;
    if ((match = /^\/change\/(.+)$/.exec(hash))) {
      renderChange(match[1]);
      show('change-view');
      $('change-heading').focus();
      document.title = 'Change ' + match[1] + ' — ' + index.title;
    } else if ((match = /^\/ci\/(.+)$/.exec(hash))) {
      renderCi(match[1]);
      show('ci-view');
      $('ci-heading').focus();
      document.title = 'CI — ' + index.title;
    } else if (hash === '/review') {
      renderReview();
      show('review-view');
      document.title = 'Awaiting review — ' + index.title;
    } else {
      show('list-view');
      document.title = index.title;
      if (lastListFocus && document.body.contains(lastListFocus)) { lastListFocus.focus(); }
    }
  }

  // ---------------------------------------------------------------- exports
  var EXPORT_FIELDS = ['run_id', 'started_at', 'ended_at', 'user', 'controller', 'playbook', 'kind', 'environments', 'hosts',
    'changed_hosts', 'failed_hosts', 'host_changes', 'record_changes', 'outcome', 'dry_run', 'authorisation', 'authorisation_ref',
    'review_status', 'awaiting_review'];

  function exportRecord(row) {
    var record = {};
    EXPORT_FIELDS.forEach(function (field) { record[field] = row[field] === undefined ? null : row[field]; });
    record.host_count = row.hosts.length;
    return record;
  }

  function csvCell(value) {
    if (value === null || value === undefined) { return ''; }
    var text = Array.isArray(value) ? value.join(' ') : String(value);
    // a leading = + - @ would make spreadsheets run the cell as a formula
    if (/^[=+\-@\t\r]/.test(text)) { text = "'" + text; }
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function download(name, type, content) {
    var url = URL.createObjectURL(new Blob([content], { type: type }));
    var link = el('a', { href: url, download: name, className: 'visually-hidden' });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  function stamp() { return index.generated_at.slice(0, 10); }

  function exportCsv() {
    var header = EXPORT_FIELDS.concat(['host_count']);
    var lines = [header.join(',')];
    current.forEach(function (row) {
      var record = exportRecord(row);
      lines.push(header.map(function (field) { return csvCell(record[field]); }).join(','));
    });
    download('change-register-' + stamp() + '.csv', 'text/csv;charset=utf-8', '\ufeff' + lines.join('\r\n') + '\r\n');
  }

  function exportJson() {
    var filters = {};
    ['q', 'from', 'to', 'host', 'outcome', 'auth', 'env', 'review', 'dry', 'nochange'].forEach(function (key) { filters[key] = state[key]; });
    var document_ = { generated_at: index.generated_at, exported_at: new Date().toISOString(), source: index.backend,
      verification: index.verification, filters: filters, count: current.length, changes: current.map(exportRecord) };
    download('change-register-' + stamp() + '.json', 'application/json', JSON.stringify(document_, null, 2) + '\n');
  }

  // ---------------------------------------------------------------- wiring
  function readForm() {
    state.q = $('f-search').value.trim().toLowerCase();
    state.from = $('f-from').value;
    state.to = $('f-to').value;
    state.host = $('f-host').value.trim().toLowerCase();
    state.outcome = $('f-outcome').value;
    state.auth = $('f-auth').value;
    state.env = $('f-env').value;
    state.review = $('f-review').value;
    state.dry = $('f-dry').checked;
    state.nochange = $('f-nochange').checked;
  }

  var pending = null;
  function onFilterInput(event) {
    clearTimeout(pending);
    var delay = event && event.target && event.target.type === 'search' ? 150 : 0;
    pending = setTimeout(function () { readForm(); refresh(false); }, delay);
  }

  function preset(name) {
    $('filters').reset();
    if (name === 'unauthorised' || name === 'emergency' || name === 'dry-run' || name === 'denied') { $('f-auth').value = name; }
    if (name === 'failed' || name === 'interrupted') { $('f-outcome').value = name; }
    if (name === 'awaiting') { $('f-review').value = 'awaiting'; }
    readForm();
    refresh(false);
    if (location.hash && location.hash !== '#/' && location.hash !== '#') { location.hash = '#/'; }
    $('list-heading').scrollIntoView({ block: 'start' });
  }

  function init() {
    var options = document.createDocumentFragment();
    index.facets.hosts.slice(0, 5000).forEach(function (host) { options.appendChild(el('option', { value: host })); });
    $('host-options').appendChild(options);

    var form = $('filters');
    form.addEventListener('input', onFilterInput);
    form.addEventListener('change', onFilterInput);
    form.addEventListener('submit', function (event) { event.preventDefault(); });
    form.addEventListener('reset', function () { setTimeout(function () { readForm(); refresh(false); }, 0); });

    document.querySelectorAll('#changes thead .sort').forEach(function (button) {
      button.addEventListener('click', function () {
        var key = button.getAttribute('data-sort');
        if (state.sort === key) { state.dir = -state.dir; } else { state.sort = key; state.dir = key === 'started_at' ? -1 : 1; }
        refresh(false);
      });
    });
    $('pager').addEventListener('click', function (event) {
      var target = event.target.closest('button[data-page]');
      if (!target) { return; }
      var pages = Math.max(1, Math.ceil(current.length / state.size));
      var action = target.getAttribute('data-page');
      state.page = action === 'first' ? 1 : action === 'prev' ? state.page - 1 : action === 'next' ? state.page + 1 : pages;
      renderList();
    });
    $('page-size').addEventListener('change', function () { state.size = parseInt($('page-size').value, 10) || 50; refresh(false); });
    $('review-pager').addEventListener('click', function (event) {
      var target = event.target.closest('button[data-page]');
      if (!target) { return; }
      reviewPage += target.getAttribute('data-page') === 'next' ? 1 : -1;
      renderReview();
    });
    document.querySelectorAll('.counts button[data-preset]').forEach(function (button) {
      button.addEventListener('click', function () { preset(button.getAttribute('data-preset')); });
    });
    $('export-csv').addEventListener('click', exportCsv);
    $('export-json').addEventListener('click', exportJson);

    $('rows').addEventListener('click', function (event) {
      var link = event.target.closest('a');
      if (link) { lastListFocus = link; }
    });
    // Up/Down move between the rows' links; / focuses the search box; Escape leaves a change page.
    document.addEventListener('keydown', function (event) {
      var target = event.target;
      var typing = target && (target.tagName === 'INPUT' || target.tagName === 'SELECT' || target.tagName === 'TEXTAREA');
      if (event.key === '/' && !typing && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        if (location.hash.indexOf('#/change/') === 0 || location.hash.indexOf('#/ci/') === 0 || location.hash === '#/review') { location.hash = '#/'; }
        $('f-search').focus();
      } else if (event.key === 'Escape' && !typing && /^#\/(change|ci)\//.test(location.hash)) {
        location.hash = '#/';
      } else if ((event.key === 'ArrowDown' || event.key === 'ArrowUp') && target.closest && target.closest('tbody') && target.tagName === 'A') {
        var row = target.closest('tr');
        var next = event.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
        var link = next && next.querySelector('td.when a');
        if (link) { event.preventDefault(); link.focus(); }
      }
    });
    window.addEventListener('hashchange', route);
    // printed pages show every host list and diff, not just the summaries
    window.addEventListener('beforeprint', function () {
      document.querySelectorAll('details:not([open])').forEach(function (node) { node.setAttribute('open', ''); node.setAttribute('data-print-opened', ''); });
    });
    window.addEventListener('afterprint', function () {
      document.querySelectorAll('details[data-print-opened]').forEach(function (node) { node.removeAttribute('open'); node.removeAttribute('data-print-opened'); });
    });

    readForm();
    refresh(false);
    route();
    document.documentElement.setAttribute('data-ready', 'true');
    if (window.performance && performance.mark) { performance.mark('register-interactive'); }
  }

  init();
}());
