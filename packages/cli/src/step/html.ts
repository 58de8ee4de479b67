// refgpt step --html FILE: the same stages as one self-contained page (inline CSS, JS and data; no
// network). Attention heatmaps are canvases drawn by the inline script; the rest is static HTML.

import { renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname, basename, join } from 'node:path'
import type { Model } from '@refgpt/core'
import { showPiece, type Guess, type Stage, type StepRun } from './model.js'

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

function probTable(top: Guess[], caption: string): string {
  const max = Math.max(...top.map((g) => g.prob), 1e-30)
  const rows = top
    .map((g, i) => `<tr><td>${i + 1}</td><td class="tok">${esc(showPiece(g.text))}</td><td>${g.id}</td><td class="bar" title="bar length relative to the first entry"><div style="width:${((g.prob / max) * 100).toFixed(2)}%"></div></td><td>${(g.prob * 100).toFixed(2)}%</td></tr>`)
    .join('')
  return `<table class="top"><caption>${esc(caption)}</caption><tr><th>#</th><th>token</th><th>id</th><th></th><th>p</th></tr>${rows}</table>`
}

function strip(v: number[] | undefined, label: string): string {
  if (!v) return ''
  return `<div class="strip-wrap"><span class="label">${esc(label)}</span><canvas class="strip" width="${Math.min(v.length, 1024)}" height="16" data-vec="${esc(JSON.stringify(v.map((x) => +x.toPrecision(4))))}"></canvas></div>`
}

function stageHtml(s: Stage, pieces: string[]): string {
  let body = `<h3>${esc(s.title)}</h3>` + s.text.map((t) => `<p>${esc(t)}</p>`).join('') + `<p class="shapes">${s.shapes.map(esc).join(' · ')}</p>`
  if (s.key === 'tokens') body += `<div class="pieces">${pieces.map((p, i) => `<span title="position ${i}">${esc(p)}</span>`).join('')}</div>`
  if (s.attn) {
    body += '<div class="heads">'
    s.attn.forEach((m, h) => {
      body += `<figure><canvas class="heatmap" width="${Math.max(64, m[0].length * 16)}" height="${Math.max(64, m.length * 16)}" data-head="${h}" data-probs="${esc(JSON.stringify(m.map((r) => r.map((x) => +x.toFixed(4)))))}"></canvas><figcaption>head ${h}</figcaption></figure>`
    })
    body += '</div>'
  }
  if (s.vector) body += strip(s.vector, s.key === 'embed' ? 'embedding (last token)' : 'last token')
  if (s.top) body += probTable(s.top, s.key === 'logits' ? 'next-token probabilities' : `logit lens after layer ${s.layer}`)
  body += `<pre>${esc(s.lines.join('\n'))}</pre>`
  return `<div class="stage" data-key="${esc(s.key)}">${body}</div>`
}

export function renderHtml(run: StepRun, model: Model, pieces: string[], prompt: string): string {
  const a = model.arch
  const parts: string[] = []
  const before = run.stages.filter((s) => s.layer === null && s.key !== 'ln_f' && s.key !== 'logits')
  parts.push(`<section class="intro">${before.map((s) => stageHtml(s, pieces)).join('')}</section>`)
  for (let l = 0; l < a.nLayer; l++)
    parts.push(`<section class="layer" data-layer="${l}"><h2>Layer ${l}${a.layers[l].attention === 'local' ? ` (local, window ${a.layers[l].window})` : ''}</h2>${run.stages.filter((s) => s.layer === l).map((s) => stageHtml(s, pieces)).join('')}</section>`)
  const lens = run.stages.filter((s) => s.layer !== null && s.top)
  const lensRows = lens.map((s) => `<tr><td>${s.layer}</td>${s.top!.map((g) => `<td>${esc(showPiece(g.text))} <small>${(g.prob * 100).toFixed(1)}%</small></td>`).join('')}</tr>`).join('')
  parts.push(`<section class="lens"><h2>Logit lens</h2><p>ln_f and the LM head applied to the residual stream after each layer (last token): what the model would predict if it stopped there.</p><table class="lens"><tr><th>layer</th><th>1</th><th>2</th><th>3</th><th>4</th><th>5</th></tr>${lensRows}</table></section>`)
  const after = run.stages.filter((s) => s.key === 'ln_f' || s.key === 'logits')
  parts.push(`<section class="final">${after.map((s) => stageHtml(s, pieces)).join('')}</section>`)

  const css = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#222}
section{border-top:2px solid #ccc;padding:.5em 0}.stage{margin:.8em 0}h3{margin:.3em 0}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}.shapes{color:#666;font-family:monospace}
.pieces span{display:inline-block;border:1px solid #89a;background:#eef4ff;margin:2px;padding:1px 4px;font-family:monospace;white-space:pre}
.heads{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;text-align:center}canvas.heatmap{border:1px solid #aaa;image-rendering:pixelated}
canvas.strip{width:100%;height:16px;border:1px solid #aaa;image-rendering:pixelated}.strip-wrap .label{font-size:12px;color:#666}
table.top td.bar{width:200px}table.top td.bar div{background:#48c;height:10px}.tok{font-family:monospace;white-space:pre}
table.lens td,table.lens th{border:1px solid #ddd;padding:2px 6px;font-family:monospace;white-space:pre}table{border-collapse:collapse}`
  const js = `for(const c of document.querySelectorAll('canvas.heatmap')){const m=JSON.parse(c.dataset.probs),g=c.getContext('2d'),R=m.length,K=m[0].length,w=c.width/K,h=c.height/R;
g.fillStyle='#fff';g.fillRect(0,0,c.width,c.height);for(let r=0;r<R;r++)for(let k=0;k<K;k++){const p=m[r][k];g.fillStyle=k>r+${0}+K-R?'#eee':'rgb('+Math.round(255-p*255)+','+Math.round(255-p*180)+',255)';g.fillRect(k*w,r*h,Math.ceil(w),Math.ceil(h))}}
for(const c of document.querySelectorAll('canvas.strip')){const v=JSON.parse(c.dataset.vec),g=c.getContext('2d'),n=v.length,W=c.width;let m=0;for(const x of v)m=Math.max(m,Math.abs(x));
for(let i=0;i<W;i++){const x=v[Math.floor(i*n/W)]/(m||1);g.fillStyle=x>=0?'rgb(255,'+Math.round(255-x*200)+','+Math.round(255-x*200)+')':'rgb('+Math.round(255+x*200)+','+Math.round(255+x*200)+',255)';g.fillRect(i,0,1,c.height)}}`
  return `<!doctype html><html><head><meta charset="utf-8"><title>refgpt step: ${esc(prompt)}</title><style>${css}</style></head><body>
<h1>refgpt step</h1><p>${esc(model.info.dir)} · ${esc(a.family)} · ${a.nLayer} layers · ${a.nHead} heads · C ${a.nEmbd} · prompt ${esc(JSON.stringify(prompt))}</p>
${parts.join('\n')}
<script>${js.replace(/<\//g, '<\\/')}</script></body></html>\n`
}

/** Writes the file atomically: a temp file beside it, then rename. */
export function writeHtml(file: string, html: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`)
  try {
    writeFileSync(tmp, html)
    renameSync(tmp, file)
  } catch (e) {
    try {
      unlinkSync(tmp)
    } catch {}
    throw e
  }
}
