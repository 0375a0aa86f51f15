import { formatTime, href, html, postForm } from '../html.js';
import { badge, notice, type Page, type PageContext, PageError, type Redirect } from './context.js';
import { groupState } from './overview.js';

export function controlsPage(ctx: PageContext): Page {
  const groups = ctx.model.groups();
  const done = ctx.query.get('done');
  const body = html`<h1>Controls</h1>
${done ? notice(`Sent "${done}" to group ${ctx.query.get('group') ?? ''}: its workers obey within 5 s.`, 'ok') : ''}
<p class="hint">Pause stops a group's intake: its workers finish running jobs, start no new ones and stop fetching (they keep heartbeating, so no rebalance). The command goes to the compacted topic <code>__strand_control</code>, so workers started later obey it too, until resumed.</p>
<div id="controls" data-live>
${
  groups.length === 0
    ? notice('No consumer group known yet.')
    : html`<table class="grid controls" data-testid="controls-table">
<thead><tr><th>group</th><th>topic</th><th>state</th><th>live workers</th><th>last command</th>${ctx.readOnly ? '' : html`<th></th>`}</tr></thead>
<tbody>${groups.map((g) => {
        const s = groupState(g);
        const paused = g.control?.action === 'pause';
        return html`<tr data-testid="control" data-group="${g.group}">
<td><a href="${href('/group', { name: g.group })}"><b>${g.group}</b></a></td>
<td class="topic">${g.topic}</td>
<td>${badge(s.text, s.tone)}</td>
<td>${g.live.length ? g.live.map((w, i) => html`${i ? html`<br>` : ''}<span class="mono">${w.snapshot.workerId}</span> ${badge(w.snapshot.state, w.snapshot.state === 'running' ? 'ok' : 'warn')}`) : html`<span class="muted">none</span>`}</td>
<td>${g.control ? html`<b>${g.control.action}</b> <small>by ${g.control.by} at ${formatTime(g.control.at)}</small>` : html`<span class="muted">-</span>`}</td>
${
  ctx.readOnly
    ? ''
    : html`<td class="row-actions">
${postForm('/controls', ctx.csrf, { group: g.group, action: 'pause' }, 'Pause intake', { buttonClass: paused ? 'btn' : 'btn warn', testId: 'pause' })}
${postForm('/controls', ctx.csrf, { group: g.group, action: 'resume' }, 'Resume', { buttonClass: paused ? 'btn primary' : 'btn', testId: 'resume' })}
</td>`
}
</tr>`;
      })}</tbody></table>`
}
</div>`;
  return { title: 'Controls', active: '/controls', body };
}

export async function controlsPost(ctx: PageContext, form: URLSearchParams): Promise<Redirect> {
  const group = form.get('group') ?? '';
  const action = form.get('action');
  if (!group || (action !== 'pause' && action !== 'resume'))
    throw new PageError(400, 'expected a group and action=pause|resume');
  await ctx.model.sendControl(group, action);
  return { redirect: `/controls?done=${action}&group=${encodeURIComponent(group)}` };
}
