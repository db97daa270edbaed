//! `GET /`: a small self-contained page (no external assets) listing the fleet from `/ops/agents`,
//! refreshed every 5 seconds. It asks for an API token once and keeps it in the browser's local
//! storage.

use axum::response::Html;

/// The page.
pub(super) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Ai-semble Ops</title>
<style>
:root{color-scheme:light dark;--bg:#f7f7f8;--fg:#1c1d21;--muted:#6b6f76;--card:#fff;--line:#e3e4e8;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700}
@media(prefers-color-scheme:dark){:root{--bg:#0f1115;--fg:#e6e7ea;--muted:#9aa0a8;--card:#171a21;--line:#262a33;--ok:#3fb950;--bad:#f85149;--warn:#d29922}}
body{margin:0;font:14px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:1rem;align-items:center;padding:.8rem 1.2rem;border-bottom:1px solid var(--line);background:var(--card)}
h1{font-size:1.05rem;margin:0}main{padding:1.2rem}.muted{color:var(--muted)}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:.5rem .7rem;border-bottom:1px solid var(--line)}th{font-weight:600;color:var(--muted);font-size:.8rem;text-transform:uppercase}
.up{color:var(--ok)}.down{color:var(--bad)}.bar{display:inline-block;height:.5rem;border-radius:3px;background:var(--ok);vertical-align:middle;margin-right:.4rem}
.hot{background:var(--warn)}.crit{background:var(--bad)}input,button{font:inherit;padding:.35rem .6rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
#summary{margin-bottom:1rem}
</style></head><body>
<header><h1>Ai-semble Ops</h1><span id="summary-top" class="muted"></span><span style="flex:1"></span>
<form id="login"><input id="token" type="password" placeholder="API token" size="30"> <button>Save token</button></form></header>
<main><div id="summary" class="muted">Loading…</div>
<table><thead><tr><th>Agent</th><th>State</th><th>CPU</th><th>Memory</th><th>Fullest disk</th><th>Buffer</th><th>Last seen</th><th>Version</th></tr></thead><tbody id="rows"></tbody></table></main>
<script>
const $=s=>document.querySelector(s);
$('#login').onsubmit=e=>{e.preventDefault();localStorage.setItem('aisemble-token',$('#token').value.trim());$('#token').value='';refresh()};
const esc=s=>String(s??'').replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const pct=v=>v==null?'<span class="muted">–</span>':`<span class="bar ${v>85?'crit':v>80?'hot':''}" style="width:${Math.max(2,Math.min(100,v))*0.6}px"></span>${v.toFixed(1)}%`;
const ago=ms=>{const s=Math.max(0,Math.round((Date.now()-ms)/1000));return s<60?s+'s ago':s<3600?Math.round(s/60)+'m ago':Math.round(s/3600)+'h ago'};
async function refresh(){
  const token=localStorage.getItem('aisemble-token');
  if(!token){$('#summary').textContent='Enter an API token (printed by `aisemble-cp quickstart`, or create one with `aisemble-cp token create --role viewer`).';return}
  try{
    const r=await fetch('/ops/agents',{headers:{Authorization:'Bearer '+token}});
    if(!r.ok){const e=await r.json().catch(()=>({}));$('#summary').textContent='Error: '+(e.error?.message||r.status);return}
    const {agents}=await r.json();const up=agents.filter(a=>a.connected).length;
    $('#summary').textContent=`${agents.length} agents, ${up} connected, ${agents.length-up} disconnected · refreshed ${new Date().toLocaleTimeString()}`;
    $('#rows').innerHTML=agents.map(a=>`<tr><td><b>${esc(a.id)}</b><div class="muted">${esc(a.hostname)}</div></td>
      <td class="${a.connected?'up':'down'}">${a.connected?'● up':'● down'}${a.monitoring==='paused'?' <span class="muted">(paused)</span>':''}</td>
      <td>${pct(a.resources.cpu_usage_percent)}</td><td>${pct(a.resources.memory_usage_percent)}</td>
      <td>${a.resources.fullest_disk?pct(a.resources.fullest_disk.usage_percent)+' <span class="muted">'+esc(a.resources.fullest_disk.mount)+'</span>':'–'}</td>
      <td>${a.buffer.records} rec${a.buffer.dropped_records?` <span class="down">${a.buffer.dropped_records} dropped</span>`:''}</td>
      <td>${ago(a.last_seen_ms)}</td><td class="muted">${esc(a.version)}</td></tr>`).join('');
  }catch(e){$('#summary').textContent='Cannot reach the control plane: '+e}
}
refresh();setInterval(refresh,5000);
</script></body></html>"#;
