// Seeded randomness for the fuzzer. Every input is a pure function of (run seed, target, k): its
// generator gets `inputRng(seed, target, k)`, so the same seed gives the same bytes on every machine,
// whatever the number of workers or the order in which they run.

/** FNV-1a over the parts (strings or numbers), as an unsigned 32-bit hash. */
export function hash32(...parts) {
  let h = 0x811c9dc5
  for (const p of parts) {
    const s = String(p)
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
    h = Math.imul(h ^ 0x2f, 0x01000193) // separator, so ("ab","c") != ("a","bc")
  }
  return h >>> 0
}

/** sfc32, seeded through splitmix32: fast, small state, good enough statistics for a fuzzer. */
export class Rng {
  constructor(seed) {
    let s = seed >>> 0
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next()
    this.b = next()
    this.c = next()
    this.d = next()
    for (let i = 0; i < 12; i++) this.u32()
  }

  /** A uniform unsigned 32-bit integer. */
  u32() {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** Uniform in [0, 1). */
  float() {
    return this.u32() / 4294967296
  }

  /** Uniform integer in [0, n). */
  int(n) {
    return n <= 0 ? 0 : Math.floor(this.float() * n)
  }

  /** Uniform integer in [lo, hi] (both included). */
  range(lo, hi) {
    return lo + this.int(hi - lo + 1)
  }

  /** True with probability p. */
  chance(p) {
    return this.float() < p
  }

  pick(arr) {
    return arr[this.int(arr.length)]
  }

  /** Picks from [[weight, value], ...]. */
  weighted(pairs) {
    let total = 0
    for (const [w] of pairs) total += w
    let x = this.float() * total
    for (const [w, v] of pairs) {
      if ((x -= w) < 0) return v
    }
    return pairs[pairs.length - 1][1]
  }

  /** A size biased towards small values: 1..max, log-uniform. */
  small(max) {
    return Math.max(1, Math.min(max, Math.floor(Math.exp(this.float() * Math.log(max + 1)))))
  }

  bytes(n) {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff
    return out
  }
}

/** The generator of input k of `target` in the run with `seed`. */
export function inputRng(seed, target, k) {
  return new Rng(hash32('refgpt-fuzz', seed, target, k))
}
