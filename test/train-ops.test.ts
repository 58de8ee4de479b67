// Every backward op of the Device interface (TrainOps), on js and wasm, against central finite
// differences of its own forward op through the same interface: L = Σ r ⊙ forward(inputs) for a
// random r, dL/d(input) from the backward with dout = r. Random small shapes with odd sizes.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createDevice, rotaryTable, type Activation, type AttentionOptions, type Buf, type Device } from '@refgpt/core'
import { rng } from './helpers.js'

const r = rng(11)
const rand = (n: number, s = 1) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s)

function put(dev: Device, a: Float32Array): Buf {
  const b = dev.alloc(a.length)
  dev.write(b, a)
  return b
}
async function get(dev: Device, b: Buf, n: number): Promise<Float32Array> {
  const out = new Float32Array(n)
  await dev.read(b, out)
  return out
}

/** Central differences of L(x) = Σ r ⊙ f(x) at the given elements of x (float64 sums of f32 outputs). */
async function numeric(x: Float32Array, at: number[], L: () => Promise<number>, h: number): Promise<number[]> {
  const out: number[] = []
  for (const i of at) {
    const old = x[i]
    x[i] = old + h
    const up = await L()
    x[i] = old - h
    const down = await L()
    x[i] = old
    out.push((up - down) / (2 * h))
  }
  return out
}

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * b[i], 0)
const pick = (n: number, k = 6) => Array.from({ length: k }, () => Math.floor(r() * n))

function close(got: ArrayLike<number>, at: number[], want: number[], label: string, tol = 2e-3) {
  at.forEach((i, j) => {
    const err = Math.abs(got[i] - want[j])
    assert.ok(err <= tol * Math.max(1, Math.abs(want[j])), `${label}[${i}]: backward ${got[i]} vs numeric ${want[j]}`)
  })
}

for (const name of ['js', 'wasm'] as const) {
  const test = suite(`TrainOps on ${name}: backward = finite differences of the forward`)
  let dev: Device
  test.before(async () => {
    dev = await createDevice(name, { threads: 2 })
  })
  test.after(async () => {
    await dev.dispose?.()
  })

  test('matmul: dx, dW, db (T 5, K 13, N 9)', async () => {
    const T = 5, K = 13, N = 9
    const x = rand(T * K), w = rand(N * K), b = rand(N), rr = rand(T * N)
    const L = async () => {
      const out = dev.alloc(T * N)
      dev.matmul(out, put(dev, x), put(dev, w), put(dev, b), T, K, N)
      return dot(await get(dev, out, T * N), rr)
    }
    const dx = put(dev, new Float32Array(T * K)), dw = put(dev, new Float32Array(N * K)), db = put(dev, new Float32Array(N))
    dev.train!.matmulBackward(dx, dw, db, put(dev, rr), put(dev, x), put(dev, w), T, K, N)
    for (const [arr, g, n, label] of [[x, dx, T * K, 'dx'], [w, dw, N * K, 'dW'], [b, db, N, 'db']] as const) {
      const at = pick(n)
      close(await get(dev, g, n), at, await numeric(arr, at, L, 1e-2), label)
    }
  })

  test('layerNorm: dx, dg, db (T 3, C 7); forward with stats equals layerNorm', async () => {
    const T = 3, C = 7, eps = 1e-5
    const x = rand(T * C, 2), g = rand(C), b = rand(C), rr = rand(T * C)
    const L = async () => {
      const out = dev.alloc(T * C)
      dev.layerNorm(out, put(dev, x), put(dev, g), put(dev, b), T, C, eps)
      return dot(await get(dev, out, T * C), rr)
    }
    const out = dev.alloc(T * C), mean = dev.alloc(T), rstd = dev.alloc(T), plain = dev.alloc(T * C)
    const xb = put(dev, x), gb = put(dev, g)
    dev.train!.layerNormForward(out, mean, rstd, xb, gb, put(dev, b), T, C, eps)
    dev.layerNorm(plain, xb, gb, put(dev, b), T, C, eps)
    assert.equal(await get(dev, out, T * C), await get(dev, plain, T * C), 'the same arithmetic')
    const dx = put(dev, new Float32Array(T * C)), dg = put(dev, new Float32Array(C)), db = put(dev, new Float32Array(C))
    dev.train!.layerNormBackward(dx, dg, db, put(dev, rr), xb, gb, mean, rstd, T, C)
    for (const [arr, grad, n, label] of [[x, dx, T * C, 'dx'], [g, dg, C, 'dg'], [b, db, C, 'db']] as const) {
      const at = pick(n)
      close(await get(dev, grad, n), at, await numeric(arr, at, L, 1e-3), label)
    }
  })

  for (const act of ['gelu_tanh', 'gelu_erf', 'relu', 'silu', 'quick_gelu'] as Activation[]) {
    test(`activation ${act}`, async () => {
      const n = 11
      const x = rand(n, 3).map((v) => (act === 'relu' && Math.abs(v) < 0.05 ? v + 0.1 : v)), rr = rand(n)
      const L = async () => {
        const out = dev.alloc(n)
        dev.activation(out, put(dev, x), n, act)
        return dot(await get(dev, out, n), rr)
      }
      const dx = dev.alloc(n)
      dev.train!.activationBackward(dx, put(dev, x), put(dev, rr), n, act)
      const at = Array.from({ length: n }, (_, i) => i)
      close(await get(dev, dx, n), at, await numeric(x, at, L, 1e-3), act)
    })
  }

  test('embedding: dtable, repeated ids accumulate, negative ids skipped', async () => {
    const rows = 6, C = 5, ids = Int32Array.from([2, 0, 2, -1, 5])
    const T = ids.length, table = rand(rows * C), rr = rand(T * C)
    const L = async () => {
      const out = dev.alloc(T * C)
      dev.embed(out, put(dev, table), ids, T, C, false)
      return dot(await get(dev, out, T * C), rr)
    }
    const dt = put(dev, new Float32Array(rows * C))
    dev.train!.embedBackward(dt, put(dev, rr), ids, T, C)
    const at = Array.from({ length: rows * C }, (_, i) => i)
    close(await get(dev, dt, rows * C), at, await numeric(table, at, L, 1e-2), 'dtable')
  })

  for (const [scale, window] of [[0.45, 0], [1, 3]] as const) {
    test(`attention: dq, dk, dv (T 6, H 3, D 5, scale ${scale}, window ${window})`, async () => {
      const T = 6, H = 3, D = 5, C = H * D
      const q = rand(T * C), k = rand(T * C), v = rand(T * C), rr = rand(T * C)
      const opts = (probs: Buf | null): AttentionOptions => ({ T, pos0: 0, nHead: H, headDim: D, scale, window, scratch: dev.alloc(H * T), probs })
      const L = async () => {
        const out = dev.alloc(T * C)
        dev.attention(out, put(dev, q), put(dev, k), put(dev, v), opts(null))
        return dot(await get(dev, out, T * C), rr)
      }
      const probs = dev.alloc(H * T * T), out = dev.alloc(T * C)
      const qb = put(dev, q), kb = put(dev, k), vb = put(dev, v)
      dev.attention(out, qb, kb, vb, opts(probs))
      const dq = put(dev, new Float32Array(T * C)), dk = put(dev, new Float32Array(T * C)), dv = put(dev, new Float32Array(T * C))
      dev.train!.attentionBackward(dq, dk, dv, put(dev, rr), qb, kb, vb, probs, opts(null))
      for (const [arr, grad, label] of [[q, dq, 'dq'], [k, dk, 'dk'], [v, dv, 'dv']] as const) {
        const at = pick(T * C, 8)
        close(await get(dev, grad, T * C), at, await numeric(arr, at, L, 1e-2), label)
      }
    })
  }

  test('rotary: the backward is the transpose (rotaryDim 4 of headDim 6)', async () => {
    const T = 4, H = 2, D = 6, R = 4, C = H * D
    const table = put(dev, rotaryTable(16, R)), positions = Int32Array.from([3, 7, 0, 11])
    const x = rand(T * C), rr = rand(T * C)
    const L = async () => {
      const b = put(dev, x)
      dev.rotary(b, table, positions, T, H, D, R)
      return dot(await get(dev, b, T * C), rr)
    }
    const d = put(dev, rr)
    dev.train!.rotaryBackward(d, table, positions, T, H, D, R)
    const at = Array.from({ length: T * C }, (_, i) => i)
    close(await get(dev, d, T * C), at, await numeric(x, at, L, 1e-2), 'dx')
  })

  test('cross-entropy: losses and dlogits (T 4, V 9, one ignored row, scale 0.25)', async () => {
    const T = 4, V = 9, targets = Int32Array.from([3, -1, 8, 0]), scale = 0.25
    const logits = rand(T * V, 4)
    const L = async () => {
      const d = dev.alloc(T * V), losses = dev.alloc(T)
      dev.train!.crossEntropy(d, losses, put(dev, logits), targets, T, V, 1)
      return (await get(dev, losses, T)).reduce((s, v) => s + v, 0) * scale
    }
    const d = dev.alloc(T * V), losses = dev.alloc(T)
    dev.train!.crossEntropy(d, losses, put(dev, logits), targets, T, V, scale)
    const ls = await get(dev, losses, T)
    assert.is(ls[1], 0, 'ignored row: loss 0')
    const row0 = Array.from(logits.subarray(0, V)), m = Math.max(...row0)
    const lse = m + Math.log(row0.reduce((s, v) => s + Math.exp(v - m), 0))
    assert.ok(Math.abs(ls[0] - (lse - row0[3])) < 1e-5, `loss ${ls[0]} vs ${lse - row0[3]}`)
    const at = Array.from({ length: T * V }, (_, i) => i)
    const got = await get(dev, d, T * V)
    for (let j = 0; j < V; j++) assert.is(got[V + j], 0, 'ignored row: zero gradient')
    close(got, at, await numeric(logits, at, L, 1e-2), 'dlogits')
  })

  test.run()
}
