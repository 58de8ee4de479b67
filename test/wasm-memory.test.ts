// WasmMemory's arena (@refgpt/wasm): bump allocation, free() with a sorted coalesced free list,
// zero-filled reuse, alignment, the top going down, errors, mark() / release(), and a randomized
// run against a plain reference model.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { WasmMemory } from '@refgpt/wasm'
import { rng } from './helpers.js'

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a
const allZero = (mem: WasmMemory, p: number, n: number) => mem.u8(p, n).every((b) => b === 0)

const arena = suite('WasmMemory: alloc, free, mark / release')

arena('without free() it is the plain bump arena (same pointers, same top)', () => {
  const mem = new WasmMemory()
  assert.is(mem.base % 64, 0)
  assert.ok(mem.base >= 64)
  assert.is(mem.bytesUsed, mem.base)
  assert.is(mem.bytesLive, 0)
  let top = mem.base
  for (const [bytes, align] of [[10, 64], [100, 16], [3, 4], [1000, 64], [7, 1], [0, 64], [65536 * 2, 64]]) {
    const p = mem.alloc(bytes, align)
    assert.is(p, alignUp(top, align), `alloc(${bytes}, ${align})`)
    top = p + Math.max(1, bytes) // a 0-byte block holds 1 byte
    assert.is(mem.bytesUsed, top)
  }
  assert.is(mem.bytesLive, 10 + 100 + 3 + 1000 + 7 + 1 + 65536 * 2)
  assert.ok(mem.byteLength >= top, 'the memory grew')
})

arena('free + alloc: the freed block is reused (first fit), bytesLive follows', () => {
  const mem = new WasmMemory()
  const a = mem.alloc(256), b = mem.alloc(256), c = mem.alloc(256)
  assert.is(mem.bytesLive, 768)
  mem.free(b)
  assert.is(mem.bytesLive, 512)
  const used = mem.bytesUsed
  const d = mem.alloc(200)
  assert.is(d, b, 'the hole is reused')
  assert.is(mem.bytesUsed, used, 'no bump')
  const e = mem.alloc(56, 8)
  assert.is(e, b + 200, 'the rest of the hole')
  const f = mem.alloc(1)
  assert.is(f, alignUp(c + 256, 64), 'hole full: bump')
  assert.is(mem.bytesLive, 256 + 256 + 200 + 56 + 1)
  for (const p of [a, c, d, e, f]) mem.free(p)
  assert.is(mem.bytesLive, 0)
  assert.is(mem.bytesUsed, mem.base, 'everything freed: the top is back at base')
})

arena('reused memory is zero-filled (free list and bump below the high-water mark)', () => {
  const mem = new WasmMemory()
  const a = mem.alloc(1000), guard = mem.alloc(16)
  mem.u8(a, 1000).fill(0xff)
  mem.free(a)
  const b = mem.alloc(1000)
  assert.is(b, a)
  assert.ok(allZero(mem, b, 1000), 'free-list reuse is zeroed')
  // the top block: freeing it lowers the top, the next bump reuses (and zeroes) its bytes
  const t = mem.alloc(5000)
  mem.u8(t, 5000).fill(0x5a)
  mem.free(t)
  const u = mem.alloc(3000, 64)
  assert.is(u, t)
  assert.ok(allZero(mem, u, 3000), 'bump reuse below the high-water mark is zeroed')
  // a block carved out of the middle of a dirty range
  mem.u8(b, 1000).fill(0x77)
  mem.free(b)
  const mid = mem.alloc(100, 512)
  assert.ok(mid >= b && mid + 100 <= b + 1000 && mid % 512 === 0, `aligned inside the hole: ${mid}`)
  assert.ok(allZero(mem, mid, 100))
  mem.free(guard)
})

arena('coalescing: three freed neighbours (any order, with their alignment gaps) hold one big block', () => {
  for (const order of [[0, 1, 2], [2, 0, 1], [1, 2, 0], [1, 0, 2]]) {
    const mem = new WasmMemory()
    const first = mem.alloc(8)
    const blocks = [mem.alloc(100), mem.alloc(300, 256), mem.alloc(50, 16)]
    const guard = mem.alloc(8)
    const start = blocks[0], end = blocks[2] + 50
    for (const i of order) mem.free(blocks[i])
    const used = mem.bytesUsed
    const big = mem.alloc(end - start, 64)
    assert.is(big, start, `order ${order}: the coalesced range takes the big block`)
    assert.is(mem.bytesUsed, used, 'no bump')
    // the alignment gap before blocks[0] (after `first`) was owned by blocks[0] and is free again too
    mem.free(big)
    mem.free(first)
    const all = mem.alloc(end - mem.base, 64)
    assert.is(all, mem.base, 'first + gap + the three blocks coalesce to one range from base')
    mem.free(all)
    mem.free(guard)
    assert.is(mem.bytesUsed, mem.base)
  }
})

arena('alignment: bumps and free-list fits honour it; leftover fragments stay free', () => {
  const mem = new WasmMemory()
  const odd = mem.alloc(3, 1)
  assert.is(odd, mem.base)
  for (const align of [1, 2, 4, 8, 16, 64, 256, 4096, 65536, 3, 12]) {
    const p = mem.alloc(5, align)
    assert.is(p % align, 0, `bump aligned to ${align}`)
  }
  const hole = mem.alloc(10000, 64), guard = mem.alloc(1)
  mem.free(hole)
  const p = mem.alloc(100, 4096)
  assert.is(p % 4096, 0)
  assert.ok(p >= hole && p + 100 <= hole + 10000, 'aligned fit inside the hole')
  // the fragment before p and the one after it are still free
  if (p > hole) assert.is(mem.alloc(p - hole, 64), hole, 'leading fragment')
  assert.is(mem.alloc(100, 4), p + 100, 'trailing fragment')
  mem.free(guard)
  mem.free(odd)
  assert.throws(() => mem.alloc(8, 0), /expected a positive integer/)
  assert.throws(() => mem.alloc(8, 1.5), /expected a positive integer/)
})

arena('the top goes down when the freed range reaches it (bytesUsed shrinks)', () => {
  const mem = new WasmMemory()
  const keep = mem.alloc(10)
  const before = mem.bytesUsed
  const a = mem.alloc(1000, 64), b = mem.alloc(2000, 256), c = mem.alloc(3, 4)
  assert.ok(mem.bytesUsed > before)
  mem.free(b)
  assert.is(mem.bytesUsed, c + 3, 'a hole in the middle: the top stays')
  mem.free(c)
  assert.is(mem.bytesUsed, a + 1000, 'c and the freed b coalesce and reach the top: it goes down to the end of a')
  mem.free(a)
  assert.is(mem.bytesUsed, before, 'back to where it was (alignment gaps included)')
  assert.is(mem.bytesFree(), 2 ** 32 - before)
  const again = mem.alloc(1000, 64)
  assert.is(again, a, 'the next bump starts there')
  mem.free(again)
  mem.free(keep)
  assert.is(mem.bytesUsed, mem.base)
  assert.is(mem.bytesLive, 0)
})

arena('errors: free of an unknown pointer, a double free, bad sizes, bad marks', () => {
  const mem = new WasmMemory()
  const a = mem.alloc(100)
  assert.throws(() => mem.free(12345), /refgpt wasm: free\(12345\): not an allocation of this memory/)
  assert.throws(() => mem.free(a + 4), new RegExp(`free\\(${a + 4}\\): not an allocation of this memory`))
  assert.throws(() => mem.free(0), /free\(0\): not an allocation of this memory/)
  mem.free(a)
  assert.throws(() => mem.free(a), new RegExp(`refgpt wasm: free\\(${a}\\): not an allocation of this memory`), 'double free')
  const other = new WasmMemory()
  const p = other.alloc(64)
  assert.throws(() => mem.free(p + 1024), /not an allocation of this memory/, 'a pointer of another memory')
  assert.throws(() => mem.alloc(-1), /expected a non-negative integer/)
  assert.throws(() => mem.alloc(1.5), /expected a non-negative integer/)
  assert.throws(() => mem.alloc(NaN), /expected a non-negative integer/)
  assert.throws(() => mem.release(mem.base - 1), /not a mark of this arena/)
  assert.throws(() => mem.release(2 ** 31), /not a mark of this arena/)
  assert.throws(() => mem.alloc(2 ** 32), /out of memory/)
  assert.is(mem.bytesLive, 0)
  assert.is(mem.bytesUsed, mem.base, 'failed calls changed nothing')
})

arena('mark / release: releases what lies above the mark, free() and release() mix', () => {
  const mem = new WasmMemory()
  const a = mem.alloc(100)
  const m = mem.mark()
  const b = mem.alloc(200), c = mem.alloc(300)
  mem.free(b)
  mem.release(m)
  assert.is(mem.bytesUsed, m)
  assert.is(mem.bytesLive, 100)
  assert.throws(() => mem.free(c), /not an allocation of this memory/, 'released')
  assert.throws(() => mem.free(b), /not an allocation of this memory/, 'freed')
  assert.is(mem.alloc(50), alignUp(m, 64), 'the free range above the mark was dropped: bump from the mark')
  mem.release(m)

  // a block allocated after mark() into a hole below the mark stays live (documented); blocks above go
  const h = mem.alloc(400), g = mem.alloc(8)
  const m2 = mem.mark()
  mem.free(h)
  const inHole = mem.alloc(300)
  assert.is(inHole, h)
  const above = mem.alloc(1000)
  mem.u8(above, 1000).fill(1)
  mem.release(m2)
  assert.is(mem.bytesUsed, m2)
  assert.not.throws(() => mem.free(inHole), 'the block in the hole below the mark is still live')
  assert.throws(() => mem.free(above), /not an allocation/)
  assert.ok(allZero(mem, mem.alloc(1000), 1000), 'released bytes come back zeroed')
  mem.release(m2)

  // the top went below the mark through free(): release(mark) frees nothing
  const m3 = mem.mark()
  mem.free(g)
  assert.ok(mem.bytesUsed < m3)
  const used = mem.bytesUsed, live = mem.bytesLive
  mem.release(m3)
  assert.is(mem.bytesUsed, used)
  assert.is(mem.bytesLive, live)

  // a block allocated after mark() that straddles it (the top had gone down) is released too
  const x = mem.alloc(1000)
  const m4 = mem.mark()
  const low = mem.bytesUsed - 1000
  mem.free(x)
  const straddle = mem.alloc(5000)
  assert.ok(straddle < m4 && straddle + 5000 > m4)
  mem.release(m4)
  assert.throws(() => mem.free(straddle), /not an allocation/)
  assert.ok(mem.bytesUsed <= low + 64, `its part below the mark is free again (top ${mem.bytesUsed})`)

  // nested marks
  mem.free(a)
  assert.is(mem.bytesLive, 0)
  assert.is(mem.bytesUsed, mem.base)
  const outer = mem.mark()
  mem.alloc(10)
  const inner = mem.mark()
  mem.alloc(20)
  mem.release(inner)
  assert.is(mem.bytesLive, 10)
  mem.release(outer)
  assert.is(mem.bytesLive, 0)
  assert.is(mem.bytesUsed, mem.base)
})

arena('randomized: alloc / free / mark / release against a reference model', () => {
  const mem = new WasmMemory({ initialBytes: 1 << 20 })
  const r = rng(2024)
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]
  const live = new Map<number, number>() // ptr -> bytes held (a 0-byte block holds 1)
  const marks: number[] = []
  let allocs = 0, reused = 0, frees = 0, releases = 0
  const t0 = Date.now()
  const check = (label: string) => {
    let sum = 0, maxEnd = mem.base
    for (const [p, n] of live) { sum += n; maxEnd = Math.max(maxEnd, p + n) }
    if (mem.bytesLive !== sum) assert.unreachable(`${label}: bytesLive ${mem.bytesLive} !== ${sum}`)
    if (mem.bytesUsed < maxEnd) assert.unreachable(`${label}: top ${mem.bytesUsed} inside a live block (ends at ${maxEnd})`)
  }
  for (let op = 0; op < 6000; op++) {
    const x = r()
    if (x < 0.5 || live.size === 0) {
      const size = r() < 0.05 ? Math.floor(r() * 200000) : r() < 0.1 ? 0 : Math.floor(r() * 3000)
      const align = pick([1, 4, 16, 64, 256, 4096])
      const before = mem.bytesUsed
      const p = mem.alloc(size, align)
      const n = Math.max(1, size)
      if (p % align !== 0) assert.unreachable(`alloc(${size}, ${align}) = ${p}: misaligned`)
      if (p < mem.base || p + n > mem.byteLength) assert.unreachable(`alloc(${size}) = ${p}: outside the arena`)
      for (const [q, m] of live) if (p < q + m && q < p + n) assert.unreachable(`alloc(${size}) = [${p}, ${p + n}) overlaps [${q}, ${q + m})`)
      if (!allZero(mem, p, n)) assert.unreachable(`alloc(${size}) = ${p}: not zero-filled`)
      mem.u8(p, n).fill(0xa5) // dirty it, so reuse without zeroing shows
      live.set(p, n)
      allocs++
      if (p + n <= before) reused++
    } else if (x < 0.93) {
      const p = pick([...live.keys()])
      mem.free(p)
      live.delete(p)
      frees++
      if (r() < 0.02) assert.throws(() => mem.free(p), /not an allocation/)
    } else if (x < 0.97 || marks.length === 0) {
      marks.push(mem.mark())
    } else {
      const m = marks.pop()!
      mem.release(m)
      for (const [p, n] of [...live]) if (p + n > m) live.delete(p) // what reaches above the mark
      releases++
    }
    check(`op ${op}`)
  }
  for (const p of [...live.keys()].sort(() => r() - 0.5)) mem.free(p)
  assert.is(mem.bytesLive, 0)
  assert.is(mem.bytesUsed, mem.base, 'everything freed: all ranges coalesced, the top is back at base')
  assert.ok(reused > 100, `free ranges were reused (${reused} of ${allocs} allocs)`)
  assert.ok(frees > 1000 && releases > 10, `frees ${frees}, releases ${releases}`)
  assert.ok(Date.now() - t0 < 20000, 'bounded in time')
  assert.ok(mem.byteLength < 64 << 20, `bounded in size: ${mem.byteLength} bytes`)
})

arena.run()
