// embed.ts — row gathers from an embedding table: out[t, :] (+)= table[ids[t], :].
//
// out: f32 [T, C]; ids: i32 [T]; accumulate != 0 adds to out instead of storing.
// table: f32 / f16 bits / bf16 bits [V, C] (16-bit and embed_f32g's tables with C a multiple of 8 in quant.ts's row groups;
// V: the table's rows, which the row-group layout needs). Values are widened exactly as in gemm. q8 / q4 tables
// (their row-group layout) are gathered by embed_q8 / embed_q4 in quant.ts.
//
// A negative id is a zero row: out[t, :] = 0 when storing, out[t, :] left unchanged (bit for bit)
// when accumulating; the table is not read. So a table split into row ranges (several buffers, or
// several memories) can be gathered range by range: each call gets the ids of its range rebased to
// it and every other id set to -1 (one storing call, then accumulating calls for the other ranges).
import { srow, wload1, wload4, wrow, wscale4, wstep } from './quant'

// @ts-ignore: decorator
@inline function embed<W>(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  const C4 = C & ~3
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2))
    const op = out + ((<usize>t * <usize>C) << 2)
    if (id < 0) { // a zero row
      if (!accumulate) memory.fill(op, 0, <usize>C << 2)
      continue
    }
    const wp = wrow<W>(table, id, C, V), sp = srow<W>(scales, id, C), rs = wstep<W>(id, C, V)
    let c = 0
    for (; c < C4; c += 4) {
      const o = op + (<usize>c << 2)
      const v = wload4<W>(wp, c, rs, wscale4<W>(sp, c))
      v128.store(o, accumulate ? f32x4.add(v128.load(o), v) : v)
    }
    for (; c < C; c++) {
      const o = op + (<usize>c << 2)
      const v = wload1<W>(wp, c, rs, sp)
      store<f32>(o, accumulate ? load<f32>(o) + v : v)
    }
  }
}

/** table: f32 [rows, C] (V unused). */
export function embed_f32(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed<f32>(out, table, 0, ids, T, C, accumulate, V)
}
/** table: f32 [V, C] in row groups (C a multiple of 8; else rows in order). */
export function embed_f32g(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed<u32>(out, table, 0, ids, T, C, accumulate, V)
}
/** table: u16 IEEE half bits [V, C]. */
export function embed_f16(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed<u16>(out, table, 0, ids, T, C, accumulate, V)
}
/** table: u16 bfloat16 bits [V, C]. */
export function embed_bf16(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed<i16>(out, table, 0, ids, T, C, accumulate, V)
}

/** The naive scalar loop (same values). */
// @ts-ignore: decorator
@inline function embed_naive<W>(out: usize, table: usize, scales: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2))
    if (id < 0) { // a zero row: zeros when storing, nothing when accumulating
      if (!accumulate) for (let c = 0; c < C; c++) store<f32>(out + ((<usize>t * <usize>C + <usize>c) << 2), 0)
      continue
    }
    const wp = wrow<W>(table, id, C, V), sp = srow<W>(scales, id, C), rs = wstep<W>(id, C, V)
    for (let c = 0; c < C; c++) {
      const o = out + ((<usize>t * <usize>C + <usize>c) << 2)
      const v = wload1<W>(wp, c, rs, sp)
      store<f32>(o, accumulate ? load<f32>(o) + v : v)
    }
  }
}
export function embed_f32_naive(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed_naive<f32>(out, table, 0, ids, T, C, accumulate, V)
}
export function embed_f32g_naive(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed_naive<u32>(out, table, 0, ids, T, C, accumulate, V)
}
export function embed_f16_naive(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed_naive<u16>(out, table, 0, ids, T, C, accumulate, V)
}
export function embed_bf16_naive(out: usize, table: usize, ids: usize, T: i32, C: i32, accumulate: i32, V: i32): void {
  embed_naive<i16>(out, table, 0, ids, T, C, accumulate, V)
}
