// Python's `random.Random` as far as lm-eval's bootstrap needs it: seed(int), random(), choices(xs, k).
// lm-eval estimates the stderr of some metrics (lambada's perplexity) by resampling with
// `random.Random(i).choices(xs, k=len(xs))`; reproducing CPython's generator makes those numbers equal
// to the harness's, not just close.
//
// CPython Modules/_randommodule.c: MT19937 (Matsumoto & Nishimura), seeded by init_by_array with the
// 32-bit words of |seed| (least significant first; [0] for 0); random() = (a * 2^26 + b) / 2^53 with
// a = genrand >>> 5, b = genrand >>> 6. Lib/random.py choices() without weights:
// [population[floor(random() * n)] for i in range(k)].

const N = 624, M = 397
const MATRIX_A = 0x9908b0df, UPPER = 0x80000000, LOWER = 0x7fffffff

export class PyRandom {
  private readonly mt = new Uint32Array(N)
  private index = N + 1

  constructor(seed: number) {
    this.seed(seed)
  }

  /** random.seed(n) for a non-negative integer n (abs() is taken, as CPython does). */
  seed(n: number): void {
    if (!Number.isSafeInteger(n)) throw new RangeError(`PyRandom.seed: an integer, found ${n}`)
    let v = Math.abs(n)
    const key: number[] = []
    do {
      key.push(v % 2 ** 32)
      v = Math.floor(v / 2 ** 32)
    } while (v > 0)
    this.initByArray(key)
  }

  private initGenrand(s: number): void {
    const mt = this.mt
    mt[0] = s >>> 0
    for (let i = 1; i < N; i++) mt[i] = (Math.imul(1812433253, mt[i - 1] ^ (mt[i - 1] >>> 30)) + i) >>> 0
    this.index = N
  }

  private initByArray(key: number[]): void {
    const mt = this.mt
    this.initGenrand(19650218)
    let i = 1, j = 0
    for (let k = Math.max(N, key.length); k > 0; k--) {
      mt[i] = ((mt[i] ^ Math.imul(mt[i - 1] ^ (mt[i - 1] >>> 30), 1664525)) + key[j] + j) >>> 0
      i++
      j++
      if (i >= N) {
        mt[0] = mt[N - 1]
        i = 1
      }
      if (j >= key.length) j = 0
    }
    for (let k = N - 1; k > 0; k--) {
      mt[i] = ((mt[i] ^ Math.imul(mt[i - 1] ^ (mt[i - 1] >>> 30), 1566083941)) - i) >>> 0
      i++
      if (i >= N) {
        mt[0] = mt[N - 1]
        i = 1
      }
    }
    mt[0] = 0x80000000
  }

  /** The next 32-bit output (genrand_uint32). */
  uint32(): number {
    const mt = this.mt
    if (this.index >= N) {
      let kk = 0, y: number
      for (; kk < N - M; kk++) {
        y = (mt[kk] & UPPER) | (mt[kk + 1] & LOWER)
        mt[kk] = mt[kk + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)
      }
      for (; kk < N - 1; kk++) {
        y = (mt[kk] & UPPER) | (mt[kk + 1] & LOWER)
        mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)
      }
      y = (mt[N - 1] & UPPER) | (mt[0] & LOWER)
      mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)
      this.index = 0
    }
    let y = mt[this.index++]
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }

  /** random.random(): a double in [0, 1) with 53 random bits. */
  random(): number {
    const a = this.uint32() >>> 5, b = this.uint32() >>> 6
    return (a * 67108864 + b) * (1 / 9007199254740992)
  }

  /** random.choices(xs, k=k) (no weights): k draws with replacement. */
  choices<T>(xs: ArrayLike<T>, k: number): T[] {
    const n = xs.length, out: T[] = new Array(k)
    for (let i = 0; i < k; i++) out[i] = xs[Math.floor(this.random() * n)]
    return out
  }
}
