// What every table of the console shares: rows reachable from the
// keyboard (Tab to a row, ↑/↓ to move, Home/End, Enter opens its first
// link or button) and the row of one event.
import { html, link } from './api.js';

export function rowKeys(e) {
  const row = e.target.closest('tr[tabindex]');
  if (!row || e.target !== row) return;
  const rows = [...row.parentElement.querySelectorAll(':scope > tr[tabindex]')];
  const i = rows.indexOf(row);
  let to = null;
  if (e.key === 'ArrowDown') to = rows[i + 1];
  else if (e.key === 'ArrowUp') to = rows[i - 1];
  else if (e.key === 'Home') to = rows[0];
  else if (e.key === 'End') to = rows[rows.length - 1];
  else if (e.key === 'Enter') {
    const target = row.querySelector('a, button');
    if (target) {
      e.preventDefault();
      target.click();
    }
    return;
  } else return;
  e.preventDefault();
  if (to) to.focus();
}

export function shortTime(ts) {
  return (ts || '').replace('T', ' ').replace(/\.\d+/, '').replace('Z', '');
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.setAttribute('role', 'cell');
  if (cls) td.className = cls;
  td.textContent = text;
  return td;
}

// The same row as EventRow, as a DOM element: for the live tail, which
// adds rows without diffing the rows it already shows.
export function eventRowElement(r) {
  const tr = document.createElement('tr');
  tr.tabIndex = 0;
  tr.setAttribute('role', 'row');
  const type = cell('');
  type.appendChild(document.createElement('a'));
  tr.append(cell('', 'num'), cell('', 'time'), type, cell(''), cell(''), cell(''));
  return fillEventRow(tr, r);
}

// Writes event `r` into a row made by eventRowElement (a new one, or one
// the tail recycles instead of allocating another).
export function fillEventRow(tr, r) {
  const e = r.event;
  const c = tr.cells;
  tr.dataset.seq = r.seq;
  c[0].textContent = String(r.seq);
  c[1].textContent = shortTime(e.timestamp);
  const a = c[2].firstChild;
  a.href = `/console/events/${encodeURIComponent(e.id)}`;
  a.textContent = e.type;
  c[3].textContent = e.project_key || '';
  c[4].textContent = e.workflow || e.hatchery || e.username || '';
  c[5].textContent = e.status || '';
  c[5].className = `status s-${(e.status || '').toLowerCase()}`;
  return tr;
}

export function EventRow({ r }) {
  const e = r.event;
  return html`<tr data-seq=${r.seq} tabindex="0">
    <td class="num">${r.seq}</td>
    <td class="time">${shortTime(e.timestamp)}</td>
    <td><a href=${`/console/events/${encodeURIComponent(e.id)}`} onClick=${link}>${e.type}</a></td>
    <td>${e.project_key || ''}</td>
    <td>${e.workflow || e.hatchery || e.username || ''}</td>
    <td class=${`status s-${(e.status || '').toLowerCase()}`}>${e.status || ''}</td>
  </tr>`;
}

// `url`: the query the rows answer (a test waits for the page's own).
export function EventTable({ id, rows, url }) {
  return html`<table class="events" id=${id} data-url=${url} onKeyDown=${rowKeys}>
    <thead><tr><th>seq</th><th>time (UTC)</th><th>type</th><th>project</th><th>what</th><th>status</th></tr></thead>
    <tbody>${rows.map((r) => html`<${EventRow} key=${r.seq} r=${r} />`)}</tbody>
  </table>`;
}
