// The health page: one self-contained document, so the binary needs no asset folder and the
// browser no CDN. It polls /api/v1/state every 2 s and redraws.
#include "net/health/health_state.h"

namespace bouquet::net::health {

const char* health_page_html() {
  return R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bouquet swarm health</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.strip { display: flex; gap: 2px; margin: .5em 0; }
.block { flex: 1; min-width: 14px; height: 28px; border-radius: 3px; font-size: 10px; color: #fff;
         display: flex; align-items: center; justify-content: center; }
.none { background: #c62828; } .thin { background: #f9a825; } .good { background: #2e7d32; }
table { border-collapse: collapse; margin-top: .5em; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.status { color: #666; } .covered { color: #2e7d32; } .gap { color: #c62828; font-weight: bold; }
</style></head>
<body><h1>Bouquet swarm health</h1>
<p class="status" id="status">loading…</p>
<div id="models"></div>
<script>
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c])); }
function render(state) {
  const root = document.getElementById('models');
  if (!state.models.length) { root.innerHTML = '<p>No model is announced in the DHT.</p>'; }
  else root.innerHTML = state.models.map(m => {
    const strip = m.blocks.map(b => `<div class="block ${b.coverage}" data-block="${b.block}" data-coverage="${b.coverage}"
        title="block ${b.block}: ${b.servers} server(s), ${b.throughput_rps.toFixed(1)} tokens/s">${b.servers}</div>`).join('');
    const rows = m.servers.map(s => `<tr><td>${esc(s.address)}</td><td>${s.span[0]}:${s.span[1]}</td><td>${esc(s.state)}</td>
        <td>${s.throughput_rps.toFixed(1)}</td><td>${s.cache_tokens_free}</td><td>${esc(s.version)}</td>
        <td>${esc(s.adapters.join(', '))}</td><td>${s.rtt_ms === null ? 'unreachable' : s.rtt_ms.toFixed(2) + ' ms'}</td></tr>`).join('');
    return `<section class="model" data-model="${esc(m.name)}" data-covered="${m.covered}">
      <h2>${esc(m.name)} — ${m.model_blocks} blocks — <span class="${m.covered ? 'covered' : 'gap'}">${m.covered ? 'every block covered' : 'blocks missing'}</span></h2>
      <div class="strip">${strip}</div>
      <table><tr><th>server</th><th>blocks</th><th>state</th><th>tokens/s</th><th>free cache</th><th>version</th><th>adapters</th><th>RTT</th></tr>${rows}</table>
    </section>`;
  }).join('');
  document.getElementById('status').textContent = 'updated ' + new Date(state.updated_at * 1000).toLocaleTimeString();
}
async function refresh() {
  try { render(await (await fetch('/api/v1/state', {cache: 'no-store'})).json()); }
  catch (e) { document.getElementById('status').textContent = 'monitor unreachable: ' + e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
)HTML";
}

}  // namespace bouquet::net::health
