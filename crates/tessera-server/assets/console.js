// The console's one script, progressive enhancement only: every page works without it.
// Shows each <time datetime> in the viewer's time zone, with the UTC value on hover.
document.querySelectorAll('time[datetime]').forEach(function (t) {
  var d = new Date(t.getAttribute('datetime'));
  if (isNaN(d.getTime())) return;
  t.title = t.getAttribute('datetime').replace('T', ' ').replace('Z', ' UTC');
  t.textContent = d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
});
document.querySelectorAll('th').forEach(function (th) {
  th.textContent = th.textContent.replace(' (UTC)', '');
});
document.querySelectorAll('td[data-label$=" (UTC)"]').forEach(function (td) {
  td.setAttribute('data-label', td.getAttribute('data-label').replace(' (UTC)', ''));
});
