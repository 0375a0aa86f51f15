// Strand Console client: live updates of the [data-live] regions and uPlot charts.
// No inline script anywhere (the CSP allows scripts from this origin only); served as is.
(() => {
  const period = Number(document.body.dataset.refreshMs || 0);
  const charts = new Map();
  const indicator = document.getElementById('live');

  function drawCharts(root) {
    for (const el of root.querySelectorAll('.chart[data-chart]')) {
      const old = charts.get(el.id);
      if (old) old.destroy();
      charts.delete(el.id);
      el.textContent = '';
      let spec;
      try {
        spec = JSON.parse(el.dataset.chart);
      } catch {
        continue;
      }
      if (!spec.data[0] || spec.data[0].length < 2) {
        el.textContent = 'collecting data: a point every 5 s';
        el.classList.add('empty');
        continue;
      }
      if (typeof window.uPlot !== 'function') continue;
      el.classList.remove('empty');
      const opts = {
        width: Math.max(220, el.clientWidth || 420),
        height: 150,
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [{ stroke: '#5c6370' }, { stroke: '#5c6370', size: 56 }],
        series: [
          {},
          ...spec.series.map((s) => ({
            label: s.label,
            stroke: s.stroke,
            width: 2,
            points: { show: false },
          })),
        ],
      };
      charts.set(el.id, new window.uPlot(opts, spec.data, el));
    }
  }

  function openDetails(region) {
    return [...region.querySelectorAll('details')].map((d) => d.open);
  }

  function setIndicator(text, ok) {
    if (!indicator) return;
    indicator.textContent = text;
    indicator.classList.toggle('down', !ok);
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const res = await fetch(location.href, {
        headers: { 'x-strand-live': '1' },
        credentials: 'same-origin',
        cache: 'no-store',
      });
      if (res.status === 401) {
        location.reload();
        return;
      }
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const active = document.activeElement;
      for (const fresh of doc.querySelectorAll('[data-live][id]')) {
        const current = document.getElementById(fresh.id);
        if (!current) continue;
        // Never swap away a field someone is typing in.
        if (
          active &&
          active !== document.body &&
          current.contains(active) &&
          active.matches('input, select, textarea')
        )
          continue;
        const open = openDetails(current);
        const node = document.importNode(fresh, true);
        current.replaceWith(node);
        node.querySelectorAll('details').forEach((d, i) => {
          if (open[i] !== undefined) d.open = open[i];
        });
        drawCharts(node);
      }
      setIndicator(`live · ${new Date().toLocaleTimeString()}`, res.ok);
    } catch {
      setIndicator('connection lost', false);
    }
  }

  // A table row with data-href opens its page (the overview's groups); links inside keep their own.
  document.addEventListener('click', (e) => {
    const row = e.target.closest?.('tr[data-href]');
    if (!row || e.target.closest('a, button, input, select, summary')) return;
    if (String(window.getSelection?.() ?? '') !== '') return;
    location.href = row.dataset.href;
  });

  function start() {
    drawCharts(document);
    if (period > 0) {
      setIndicator(`live · ${new Date().toLocaleTimeString()}`, true);
      setInterval(refresh, period);
    }
    let resizeTimer;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => drawCharts(document), 200);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
