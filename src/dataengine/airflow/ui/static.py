"""The stylesheet and the two small scripts of the monitoring pages (served inline: no build step)."""

from __future__ import annotations

#: Box colour by origin (ARCHITECTURE §4): what proposed the box.
ORIGIN_COLOURS = {
    "detector": "#1f77b4",
    "ensemble": "#17becf",
    "interpolated": "#ff7f0e",
    "human": "#2ca02c",
    "synthetic": "#9467bd",
}

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
nav{background:#017cee;padding:8px 16px}
nav a{color:#fff;margin-right:18px;text-decoration:none;font-weight:600}
nav a.on{text-decoration:underline}main{padding:12px 20px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:left;vertical-align:top}th{background:#f0f0f0}.num{text-align:right}
.runs a{display:block;font-size:11px;color:#555}.bar{background:#017cee;height:14px;display:inline-block}
.muted{color:#888}.err{color:#b00}.pager a{margin-right:12px}
.chart rect.clip{fill:#f4f4f4;stroke:#ddd}.chart rect.sel{fill:#c8f0c8;stroke:#7c7}
.legend .key{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:-1px}
.legend i.sel{background:#c8f0c8}.legend i.bud{border-top:2px dashed #c00;height:0}
.viewer{display:flex;gap:12px;flex-wrap:wrap}.panel h3{margin:4px 0;font-size:14px}
.frame{position:relative;display:inline-block;line-height:0}.frame img{max-width:100%;display:block}
.frame svg{position:absolute;left:0;top:0;width:100%;height:100%}.frame text{font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{
background:#fff;border:1px solid #ddd;padding:6px;width:300px;
font-size:12px}.card.new{border-color:#017cee}.card .frame{width:288px}
"""

CLIP_JS = """
(function(){
  const data = JSON.parse(document.getElementById('clip-data').textContent);
  const slider = document.getElementById('scrub'), label = document.getElementById('frame-label');
  const colours = data.colours;
  function boxes(version, index, w, h){
    const list = (data.versions[version] || {boxes:{}}).boxes[index] || [];
    return list.map(function(b){
      const c = colours[b[5]] || '#000', t = b[4] + (b[6] === null ? '' : ' ' + b[6].toFixed(2));
      return '<rect x="'+b[0]+'" y="'+b[1]+'" width="'+(b[2]-b[0])+'" height="'+(b[3]-b[1])+
        '" fill="none" stroke="'+c+'" stroke-width="'+Math.max(2, w/320)+'"><title>'+b[5]+'</title></rect>'+
        '<text x="'+b[0]+'" y="'+Math.max(12, b[1]-3)+'" fill="'+c+'" font-size="'+Math.max(12, w/50)+'">'+
        t+'</text>';
    }).join('');
  }
  function show(i){
    const f = data.frames[i];
    label.textContent = 'frame ' + f.index + ' (' + (i+1) + ' of ' + data.frames.length + ')';
    data.panels.forEach(function(v, p){
      document.getElementById('img-'+p).src = data.frameBase + f.image;
      const svg = document.getElementById('svg-'+p);
      svg.setAttribute('viewBox', '0 0 ' + f.width + ' ' + f.height);
      svg.innerHTML = boxes(v, String(f.index), f.width, f.height);
    });
  }
  if (!data.frames.length) return;
  slider.max = data.frames.length - 1;
  slider.addEventListener('input', function(){ show(+slider.value); });
  document.addEventListener('keydown', function(e){
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft'){
      slider.value = Math.min(+slider.max, Math.max(0, +slider.value + (e.key === 'ArrowRight' ? 1 : -1)));
      show(+slider.value);
    }
  });
  let timer = null;
  document.getElementById('play').addEventListener('click', function(){
    if (timer){ clearInterval(timer); timer = null; return; }
    timer = setInterval(function(){
      slider.value = (+slider.value + 1) % data.frames.length; show(+slider.value);
    }, 150);
  });
  show(0);
  // Warm the browser cache so scrubbing never waits on the network.
  data.frames.forEach(function(f){ const im = new Image(); im.src = data.frameBase + f.image; });
})();
"""

STREAM_JS = """
(function(){
  const box = document.getElementById('cards'), status = document.getElementById('stream-status');
  let last = +box.dataset.last;
  async function poll(){
    try {
      const r = await fetch(box.dataset.api + '?after=' + last, {credentials: 'same-origin'});
      if (!r.ok){ status.textContent = 'stream paused: HTTP ' + r.status; return; }
      const body = await r.json();
      if (body.html){
        box.querySelectorAll('.card.new').forEach(function(c){ c.classList.remove('new'); });
        box.insertAdjacentHTML('afterbegin', body.html);
        while (box.children.length > 60) box.removeChild(box.lastElementChild);
      }
      last = Math.max(last, body.last_id);
      status.textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) { status.textContent = 'stream error: ' + e; }
  }
  setInterval(poll, +box.dataset.interval);
})();
"""
