//! The dashboard: one self-contained HTML page (no external assets) for incidents. It polls
//! `/metrics` every 2 s, keeps the last minute of samples in the browser and shows, over a sliding
//! window (10 s or 1 min, from differences between samples, never since process start): per API
//! the request rate with a sparkline, status classes, 429s and p50/p99 latency (from the
//! histogram buckets); per upstream every endpoint's health, ejection state and ejection count.

pub const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringway</title>
<style>
body{font:14px system-ui,sans-serif;margin:20px;background:#fafafa;color:#222}
h1{font-size:18px;margin:0 0 4px} #meta{color:#666;margin-bottom:12px} h3{font-size:15px;margin:18px 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;width:330px}
.card h2{font-size:14px;margin:0 0 6px} svg{display:block}
.bad{color:#c62828;font-weight:600} .warn{color:#ef6c00;font-weight:600} .ok{color:#2e7d32}
table{border-collapse:collapse;font-size:12px;margin-top:6px} td,th{padding:1px 6px;text-align:right}
button{margin-left:8px}
</style></head><body>
<h1>ringway</h1>
<div id="meta">loading&hellip;</div>
<div>window: <button onclick="win=10;draw()">last 10 s</button><button onclick="win=60;draw()">last 1 min</button></div>
<h3>APIs</h3><div class="grid" id="apis"></div>
<h3>Upstream endpoints</h3><div class="grid" id="ups"></div>
<script>
let win=10; const samples=[]; const LE=[];
function parse(text){
  const m=new Map();
  for(const line of text.split('\n')){
    if(!line||line[0]==='#') continue;
    const sp=line.lastIndexOf(' '); m.set(line.slice(0,sp), parseFloat(line.slice(sp+1)));
  }
  return m;
}
function labels(key){
  const o={}, b=key.indexOf('{'); if(b<0) return o;
  for(const kv of key.slice(b+1,-1).match(/[a-z_]+="[^"]*"/g)||[]){const i=kv.indexOf('='); o[kv.slice(0,i)]=kv.slice(i+2,-1);}
  return o;
}
function name(key){const b=key.indexOf('{'); return b<0?key:key.slice(0,b);}
// per-API totals of one sample: {api: {req, c2, c4, c5, r429, buckets:{le:count}}}
function apis(m){
  const a={};
  const get=k=>a[k]||(a[k]={req:0,c2:0,c4:0,c5:0,r429:0,buckets:{}});
  for(const [k,v] of m){
    const n=name(k), l=labels(k); if(!l.api) continue; const id=l.service+'/'+l.api;
    if(n==='ringway_requests_total'){const e=get(id); e.req+=v; if(l.class==='2xx')e.c2+=v; if(l.class==='4xx')e.c4+=v; if(l.class==='5xx')e.c5+=v;}
    if(n==='ringway_rate_limited_total') get(id).r429+=v;
    if(n==='ringway_request_duration_seconds_bucket'&&l.le!=='+Inf') get(id).buckets[l.le]=v;
  }
  return a;
}
function pct(b0,b1,q){
  const les=Object.keys(b1).map(Number).sort((x,y)=>x-y); const tot=(k)=>(b1[k]||0)-((b0&&b0[k])||0);
  const all=les.length?tot(String(les[les.length-1])):0; if(all<=0) return '-';
  for(const le of les){ if(tot(String(le))>=q*all) return le<0.001?'≤'+Math.round(le*1e6)+' µs':le<1?'≤'+(le*1e3)+' ms':'≤'+le+' s'; }
  return '>'+les[les.length-1]+' s';
}
function spark(series){
  const W=300,H=40, max=Math.max(1,...series);
  const pts=series.map((v,i)=>(i*(W-4)/Math.max(1,series.length-1)+2)+','+(H-3-v/max*(H-8))).join(' ');
  return '<svg width="'+W+'" height="'+H+'"><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="'+pts+'"/></svg>';
}
function draw(){
  if(samples.length<2){return;}
  const now=samples[samples.length-1]; let old=samples[0];
  for(const s of samples){ if(now.t-s.t<=win*1000){old=s;break;} }
  const dt=Math.max(0.001,(now.t-old.t)/1000), A1=apis(now.m), A0=apis(old.m);
  document.getElementById('meta').textContent='sliding window of '+dt.toFixed(0)+' s, refreshed every 2 s from /metrics';
  let html='';
  for(const id of Object.keys(A1).sort()){
    const a=A1[id], b=A0[id]||{req:0,c2:0,c4:0,c5:0,r429:0,buckets:{}};
    const rate=(a.req-b.req)/dt, e5=(a.c5-b.c5)/dt, r429=(a.r429-b.r429)/dt;
    const series=[]; for(let i=1;i<samples.length;i++){const x=apis(samples[i].m)[id], y=apis(samples[i-1].m)[id]; if(x&&y) series.push((x.req-y.req)/((samples[i].t-samples[i-1].t)/1000));}
    html+='<div class="card"><h2>api '+id+'</h2>'+spark(series.slice(-30))+
      '<table><tr><th>req/s</th><th>2xx</th><th>4xx</th><th>5xx</th><th>429</th><th>p50</th><th>p99</th></tr><tr><td>'+rate.toFixed(1)+
      '</td><td>'+((a.c2-b.c2)/dt).toFixed(1)+'</td><td>'+((a.c4-b.c4)/dt).toFixed(1)+'</td><td class="'+(e5>0?'bad':'')+'">'+e5.toFixed(1)+
      '</td><td class="'+(r429>0?'warn':'')+'">'+r429.toFixed(1)+'</td><td>'+pct(b.buckets,a.buckets,0.5)+'</td><td>'+pct(b.buckets,a.buckets,0.99)+'</td></tr></table></div>';
  }
  document.getElementById('apis').innerHTML=html||'<p>No APIs configured.</p>';
  const ups={};
  for(const [k,v] of now.m){ const n=name(k), l=labels(k); if(!n.startsWith('ringway_upstream_endpoint_')) continue;
    const u=ups[l.upstream]||(ups[l.upstream]={}); const e=u[l.endpoint]||(u[l.endpoint]={}); e[n.slice(26)]=v; }
  let uh='';
  for(const u of Object.keys(ups).sort()){
    uh+='<div class="card"><h2>upstream '+u+'</h2><table><tr><th>endpoint</th><th>state</th><th>ejections</th></tr>';
    for(const ep of Object.keys(ups[u]).sort()){const e=ups[u][ep];
      const st=!e.healthy?'<span class="bad">unhealthy</span>':e.ejected?'<span class="warn">ejected</span>':'<span class="ok">in rotation</span>';
      uh+='<tr><td>'+ep+'</td><td>'+st+'</td><td>'+(e.ejections_total||0)+'</td></tr>';}
    uh+='</table></div>';
  }
  document.getElementById('ups').innerHTML=uh||'<p>No upstreams.</p>';
}
async function refresh(){
  try{
    const r=await fetch('/metrics',{cache:'no-store'}); const m=parse(await r.text());
    samples.push({t:Date.now(),m}); while(samples.length>32) samples.shift();
    if(samples.length<2) document.getElementById('meta').textContent='collecting a first window…';
    draw();
  }catch(e){ document.getElementById('meta').textContent='error: '+e; }
}
refresh(); setTimeout(refresh,500); setInterval(refresh,2000);
</script></body></html>
"##;
