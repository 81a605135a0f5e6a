//! The dashboard: one self-contained HTML page (no external assets) that polls
//! `/stats/latency` and draws each API's and upstream's percentile curve as SVG.

pub const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringway latency</title>
<style>
body{font:14px system-ui,sans-serif;margin:20px;background:#fafafa;color:#222}
h1{font-size:18px;margin:0 0 4px} #meta{color:#666;margin-bottom:12px}
.grid{display:flex;flex-wrap:wrap;gap:16px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;width:420px}
.card h2{font-size:14px;margin:0 0 6px} svg{display:block}
.axis{stroke:#999;stroke-width:1} .lbl{font-size:10px;fill:#555}
table{border-collapse:collapse;font-size:12px;margin-top:6px} td,th{padding:1px 6px;text-align:right}
</style></head><body>
<h1>ringway &mdash; latency percentiles</h1>
<div id="meta">loading&hellip;</div>
<div class="grid" id="grid"></div>
<script>
const Q=["p50","p90","p99","p999","max"], COLORS={total:"#1f77b4",connect:"#2ca02c",first_byte:"#d62728"};
function curve(phases){
  const W=400,H=160,L=44,B=22,vals=[];
  for(const p in phases){ if(phases[p].count>0) Q.forEach(q=>vals.push(Math.max(1,phases[p][q]))); }
  if(!vals.length) return '<svg width="'+W+'" height="40"><text x="4" y="20" class="lbl">no requests in this window</text></svg>';
  const lo=Math.log10(Math.min(...vals)), hi=Math.max(lo+1,Math.log10(Math.max(...vals)));
  const x=i=>L+i*(W-L-10)/(Q.length-1), y=v=>H-B-(Math.log10(Math.max(1,v))-lo)/(hi-lo)*(H-B-10);
  let s='<svg width="'+W+'" height="'+H+'"><line class="axis" x1="'+L+'" y1="'+(H-B)+'" x2="'+W+'" y2="'+(H-B)+'"/><line class="axis" x1="'+L+'" y1="5" x2="'+L+'" y2="'+(H-B)+'"/>';
  Q.forEach((q,i)=>s+='<text class="lbl" x="'+(x(i)-10)+'" y="'+(H-6)+'">'+q+'</text>');
  for(let e=Math.floor(lo);e<=Math.ceil(hi);e++){const v=Math.pow(10,e); if(e<lo||e>hi) continue; s+='<text class="lbl" x="2" y="'+(y(v)+3)+'">'+(v>=1000?(v/1000)+'ms':v+'us')+'</text>';}
  for(const p in phases){ const h=phases[p]; if(!h.count) continue;
    s+='<polyline fill="none" stroke-width="2" stroke="'+COLORS[p]+'" points="'+Q.map((q,i)=>x(i)+','+y(h[q])).join(' ')+'"/>';
    Q.forEach((q,i)=>s+='<circle r="2.5" fill="'+COLORS[p]+'" cx="'+x(i)+'" cy="'+y(h[q])+'"/>'); }
  return s+'</svg>';
}
function table(phases){
  let t='<table><tr><th>phase</th><th>count</th>'+Q.map(q=>'<th>'+q+'</th>').join('')+'</tr>';
  for(const p in phases){const h=phases[p]; t+='<tr><td style="color:'+COLORS[p]+'">'+p+'</td><td>'+h.count+'</td>'+Q.map(q=>'<td>'+h[q]+'</td>').join('')+'</tr>';}
  return t+'</table>';
}
async function refresh(){
  try{
    const r=await fetch('/stats/latency',{cache:'no-store'}); const d=await r.json();
    document.getElementById('meta').textContent='window '+d.window_s.toFixed(1)+' s, values in µs, log scale'+(d.workers_missing.length?' — workers missing: '+d.workers_missing:'');
    let html='';
    for(const scope of ['apis','upstreams']){ const g=d[scope]||{};
      for(const name in g){ html+='<div class="card"><h2>'+scope.slice(0,-1)+' '+name+'</h2>'+curve(g[name])+table(g[name])+'</div>'; } }
    document.getElementById('grid').innerHTML=html||'<p>No APIs configured.</p>';
  }catch(e){ document.getElementById('meta').textContent='error: '+e; }
}
refresh(); setInterval(refresh,2000);
</script></body></html>
"##;
