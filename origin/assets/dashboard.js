// The admin dashboard's charts (uPlot) and live refresh: the page's tables already carry
// every number; this draws them and polls /admin/data every 5 s to keep them current.
(function () {
  'use strict';
  var REFRESH_MS = 5000;
  var COLORS = { requests: '#2f6fde', logins: '#1f9d6b', failed: '#d64545', signups: '#7a4fd6', bar: '#2f6fde', risk: '#d98b1a', churn: '#d64545' };
  var charts = {};

  function initial() {
    var node = document.getElementById('dashboard-data');
    return node ? JSON.parse(node.textContent) : null;
  }

  function width(el) { return Math.max(280, el.clientWidth || 600); }

  function activityData(d) {
    var a = d.activity;
    return [a.minutes, a.requests, a.logins, a.failed_logins, a.signups];
  }

  function lineChart(el, data) {
    var opts = {
      width: width(el), height: 240,
      scales: { x: { time: true } },
      axes: [{}, { label: 'per minute' }],
      series: [
        {},
        { label: 'requests', stroke: COLORS.requests, width: 2, fill: 'rgba(47,111,222,0.08)' },
        { label: 'logins', stroke: COLORS.logins, width: 2 },
        { label: 'failed logins', stroke: COLORS.failed, width: 2 },
        { label: 'signups', stroke: COLORS.signups, width: 2 },
      ],
    };
    return new uPlot(opts, data, el);
  }

  // Bars over categories: x is 0..n-1, the axis shows each category's label.
  function barChart(el, labels, values, color, height) {
    var xs = labels.map(function (_, i) { return i; });
    var opts = {
      width: width(el), height: height,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.15]; } } },
      axes: [
        { values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) && labels[v] !== undefined ? labels[v] : ''; }); }, incrs: [1], grid: { show: false } },
        {},
      ],
      legend: { show: false },
      cursor: { show: false },
      series: [{}, { label: 'count', fill: color, stroke: color, paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
    };
    var chart = new uPlot(opts, [xs, values], el);
    chart._labels = labels;
    return chart;
  }

  function tierSeries(d) {
    return { labels: d.tiers.map(function (t) { return t.tier; }), values: d.tiers.map(function (t) { return t.requests; }) };
  }

  function riskSeries(d) {
    return { labels: d.security.risk.map(function (r) { return r[0]; }), values: d.security.risk.map(function (r) { return r[1]; }) };
  }

  function churnSeries(d) {
    return { labels: d.business.churn_risk.map(function (_, i) { return (i * 10) + '%'; }), values: d.business.churn_risk };
  }

  function sum(xs) { return xs.reduce(function (a, b) { return a + b; }, 0); }

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = String(value);
  }

  function draw(d) {
    var el = document.getElementById('chart-activity');
    if (el) charts.activity = lineChart(el, activityData(d));
    el = document.getElementById('chart-tiers');
    if (el) { var t = tierSeries(d); charts.tiers = barChart(el, t.labels, t.values, COLORS.bar, 200); }
    el = document.getElementById('chart-risk');
    if (el) { var r = riskSeries(d); charts.risk = barChart(el, r.labels, r.values, COLORS.risk, 170); }
    el = document.getElementById('chart-churn');
    if (el && d.business.churn_risk.length) { var c = churnSeries(d); charts.churn = barChart(el, c.labels, c.values, COLORS.churn, 170); }
  }

  function update(d) {
    if (charts.activity) charts.activity.setData(activityData(d));
    if (charts.tiers) { var t = tierSeries(d); charts.tiers.setData([t.labels.map(function (_, i) { return i; }), t.values]); }
    if (charts.risk) { var r = riskSeries(d); charts.risk.setData([r.labels.map(function (_, i) { return i; }), r.values]); }
    setText('kpi-requests', sum(d.activity.requests));
    setText('kpi-logins', sum(d.activity.logins));
    setText('kpi-failed', sum(d.activity.failed_logins));
    setText('kpi-signups', sum(d.activity.signups));
    setText('kpi-security-failed', d.security.failed_logins);
    setText('kpi-softlocks', d.security.softlocks);
    setText('generated', d.generated_at.split('.')[0].replace('Z', '').replace('T', ' '));
    var rows = document.querySelectorAll('#table-tiers tbody tr');
    d.tiers.forEach(function (t, i) {
      var cells = rows[i] ? rows[i].querySelectorAll('td.num') : [];
      if (cells.length === 3) { cells[0].textContent = t.users; cells[1].textContent = t.requests; cells[2].textContent = t.refusals; }
    });
  }

  function live(state) {
    var el = document.getElementById('live');
    if (!el) return;
    el.textContent = state ? 'live' : 'refresh failed, retrying';
    el.className = state ? 'on' : 'off';
  }

  function poll() {
    fetch('/admin/data', { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('status ' + r.status); return r.json(); })
      .then(function (d) { update(d); live(true); })
      .catch(function () { live(false); })
      .finally(function () { setTimeout(poll, REFRESH_MS); });
  }

  function start() {
    var d = initial();
    if (!d || typeof uPlot === 'undefined') return;
    draw(d);
    document.body.setAttribute('data-charts', String(Object.keys(charts).length));
    live(true);
    setTimeout(poll, REFRESH_MS);
    window.addEventListener('resize', function () {
      Object.keys(charts).forEach(function (k) {
        var c = charts[k];
        c.setSize({ width: width(c.root.parentNode), height: c.height });
      });
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
