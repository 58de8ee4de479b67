// The Device interface: the small set of numeric ops every model is written in.
//
// Model files say WHAT to compute (which weights, which op, in what order); a Device says HOW
// (plain JS loops, WASM SIMD, WebGPU ...). A model file contains no numeric loop.
//
// Conventions (llm.c style): outputs first, then inputs, then weights, then sizes.
// Shapes are row-major; T is the number of token rows in flight, C the hidden size.
// All arithmetic is f32 (the js device accumulates in f64, which is at least as accurate).
// Buffers are opaque handles: a Float32Array on `js`, an offset into linear memory on `wasm`.
//
// Ops are synchronous calls that a device may run at once (js, wasm) or only enqueue (a GPU): they
// take effect in call order. Reading to the host is the ONE asynchronous boundary: read() and
// snapshot() return Promises, and the engine never looks at device data any other way.

import type { DType } from '../io/types.js'

declare const bufBrand: unique symbol
/** An opaque handle to a device buffer of f32 elements (or a weight in its storage dtype). */
export interface Buf {
  readonly [bufBrand]: true
}

/**
 * How a device keeps a weight: as stored in checkpoints (F32, F16, BF16), Q8 (int8 with one f32 scale
 * per block of 32 values along a row) or Q4 (4-bit levels with one f32 scale per block of 32; ggml's
 * q4_0 rule). F32/F16/BF16 arithmetic is f32 on exactly the values the storage type represents
 * (f16/bf16-rounded). A matmul with a Q8 or Q4 weight is an integer product: the activations are
 * quantized per block of 32 as well (device/storage.ts, quantizeQ8) and each block's dot product is an
 * exact integer, scaled and summed in f32 in a fixed order (matmulQuantized in device/js.ts); every
 * device computes exactly that, so every device gives the same result for the same storage. Embedding
 * gathers read the dequantized values. 1-D tensors (biases, LayerNorm) stay f32 under Q8 / Q4 and are
 * rounded under F16/BF16.
 */
export type Storage = DType | 'Q8' | 'Q4'

/** Activation functions HF's ACT2FN names map onto (see models/arch.ts). */
export type Activation = 'gelu_tanh' | 'gelu_erf' | 'relu' | 'silu' | 'quick_gelu'

export interface AttentionOptions {
  /** Query rows in flight; query t sits at position pos0 + t of the sequence (and of the KV cache). */
  T: number
  pos0: number
  nHead: number
  headDim: number
  /** Multiplies q·k before the softmax: 1/sqrt(headDim) for GPT-2/GPT-J, 1 for GPT-Neo. */
  scale: number
  /** Local attention: query i sees keys j with i - window < j <= i. 0 = global (all j <= i). */
  window: number
  /** Scratch of at least [nHead, pos0 + T] f32 the device may use for scores (the js device does not). */
  scratch?: Buf | null
  /**
   * Optional [nHead, T, pos0 + T] output of the softmax probabilities (0 where masked).
   * Only passed when a tracer asks for it, so the token loop pays nothing for it.
   */
  probs?: Buf | null
}

/** What one device buffer may hold. */
export interface DeviceLimits {
  /**
   * Bytes one buffer may hold. Bigger weights are placed as several buffers, split by rows
   * (models/weights.ts): a WebGPU binding holds 128 MiB by default, GPT-2's wte is 154 MB.
   * Infinity on js and wasm, unless set for tests.
   */
  readonly maxBufferBytes: number
}

export interface Device {
  /** 'js' | 'wasm' | ... */
  readonly name: string
  readonly limits: DeviceLimits

  // --- placement (load time only) -------------------------------------------------------------
  /** A zero-filled buffer of n f32 elements (load and session time; never in the token loop). */
  alloc(n: number): Buf
  /** Releases a buffer from alloc() (sessions, KV caches that grow). The handle is dead afterwards. */
  free(buf: Buf): void
  /**
   * Places a weight of `shape` ([rows, cols] or [n]) given as f32, kept as `storage` (default F32).
   * The device may take ownership of `data`. A [rows, cols] weight is an operand of matmul and embed only,
   * which lets a device keep its rows in another order (wasm: row groups); read / write / snapshot still see
   * rows in order. Tables that other ops index themselves (the rotary table) are placed 1-D.
   */
  weight(data: Float32Array, shape: readonly number[], storage?: Storage): Buf
  /**
   * True when weight() copies `data` and keeps no reference to it: a checkpoint reader then reads every
   * tensor into one reused host array instead of a fresh one each (fresh pages cost more than the read
   * itself on some machines: a first touch of new memory ran at 0.35 GB/s on the reference VM).
   */
  readonly weightCopies?: boolean
  /**
   * Optional fast path for F32 weights: allocates the weight and lets `fill` write its elements in
   * place (a checkpoint reads straight from the file into device memory: one copy, no JS array).
   */
  weightF32?(shape: readonly number[], fill: (dst: Float32Array) => void): Buf
  /**
   * Optional, for devices made of several address spaces (wasm32 memories end at 4 GiB).
   * reserve(bytes): the group that receives the next `bytes` of weights and buffers (the current one
   * if they fit, else a new one, which becomes current); use(g) makes group g current. Ops only ever
   * combine buffers of one group; copy() may cross groups.
   */
  readonly placement?: {
    reserve(bytes: number): number
    use(group: number): void
  }
  /** buf[0 .. n) = 0 (training's gradient and scratch buffers; never in the token loop). */
  zero(buf: Buf, n: number): void
  /** Copies src into buf[offset ...]. */
  write(buf: Buf, src: Float32Array, offset?: number): void
  /**
   * Copies buf[offset .. offset + dst.length) into dst; dst holds the data when the Promise resolves
   * (the one per-token copy out: logits). The copy is ordered after every op called before read()
   * and before every op called after it, so a caller may reuse buf once read() has been called.
   */
  read(buf: Buf, dst: Float32Array, offset?: number): Promise<void>
  /**
   * Takes a copy of buf[offset .. offset + n) NOW (ordered like read()) and resolves it later: what a
   * tracer uses, since the buffer is overwritten by the next stage.
   */
  snapshot(buf: Buf, offset: number, n: number): Promise<Float32Array>

  // --- ops --------------------------------------------------------------------------------------
  /** dst[dstOff .. dstOff+n) = src[srcOff .. srcOff+n)  (KV-cache stores, row picks). */
  copy(dst: Buf, dstOff: number, src: Buf, srcOff: number, n: number): void
  /**
   * out[t, :] (+)= table[ids[t], :] for t < T; table is [rows, C]. accumulate adds instead of storing.
   * A negative id is a zero row: stored as zeros, or nothing added (a table split into row ranges is
   * gathered range by range with the ids outside each range set to -1).
   */
  embed(out: Buf, table: Buf, ids: Int32Array, T: number, C: number, accumulate: boolean): void
  /** out[T, N] = x[T, K] · W[N, K]^T (+ b[N]). W is stored [out, in] (nn.Linear layout). */
  matmul(out: Buf, x: Buf, w: Buf, b: Buf | null, T: number, K: number, N: number): void
  /** out[t] = (x[t] - mean) / sqrt(var + eps) * g + b over rows of C (biased variance). out may be x. */
  layerNorm(out: Buf, x: Buf, g: Buf, b: Buf, T: number, C: number, eps: number): void
  /** out[i] = act(x[i]) for i < n. out may be x. */
  activation(out: Buf, x: Buf, n: number, act: Activation): void
  /** out[i] = a[i] + b[i] for i < n. out may be a or b. */
  add(out: Buf, a: Buf, b: Buf, n: number): void
  /**
   * GPT-J rotary embedding in place on x[T, nHead * headDim]: on the first rotaryDim dims of every
   * head, the interleaved pairs (2i, 2i+1) are rotated by the angle of pair i at positions[t]:
   *   x[2i] = x[2i] cos - x[2i+1] sin,  x[2i+1] = x[2i+1] cos + x[2i] sin
   * with (cos, sin) = table[positions[t], i] (table: [nPositions, rotaryDim / 2, 2], see rotaryTable).
   */
  rotary(x: Buf, table: Buf, positions: Int32Array, T: number, nHead: number, headDim: number, rotaryDim: number): void
  /**
   * Causal self-attention of T queries over the KV cache of one sequence.
   * out[T, nHead*headDim]; q[T, nHead*headDim]; kCache/vCache[nCtx, nHead*headDim] hold positions
   * 0 .. pos0+T-1 (the current rows already stored).
   */
  attention(out: Buf, q: Buf, kCache: Buf, vCache: Buf, o: AttentionOptions): void
  /**
   * out[t] = logits[t, targets[t]] - logsumexp(logits[t, :]) for t < T (logits [T, V], left
   * unchanged): the log-probability of each row's target token. A negative target gives 0.
   * greedy (optional, [T]): 1 where targets[t] is the row's first argmax (torch.argmax == target,
   * lm-eval's is_greedy), else 0; a row with a NaN, or without a target, gives 0.
   */
  logProbs(out: Buf, logits: Buf, targets: Int32Array, T: number, V: number, greedy?: Buf | null): void

  /** Optional: releases threads / GPU resources. The device is unusable afterwards. */
  dispose?(): Promise<void>

  /** The backward ops (training), when the device has them (js, wasm). */
  readonly train?: TrainOps
}

/**
 * The ops a training step adds (llm.c's *_backward). Gradients named d<x>; every gradient output
 * ACCUMULATES (+=) unless the op says "stores", so a tensor read by several ops (the residual stream,
 * a tied embedding) collects all its contributions. Training arithmetic is f32 on F32 weights.
 */
export interface TrainOps {
  /**
   * Optional: puts a weight in the layout the training ops take (f32, rows in order). A device may keep F32
   * weights in another order for inference (wasm: row groups); a trainer calls this once for every weight
   * it trains, before its first step. Inference keeps working on the weight afterwards.
   */
  trainable?(w: Buf): void
  /** layerNorm, also storing mean[t] and rstd[t] = 1 / sqrt(var + eps) for the backward. */
  layerNormForward(out: Buf, mean: Buf, rstd: Buf, x: Buf, g: Buf, b: Buf, T: number, C: number, eps: number): void
  /** dx, dg, db += the LayerNorm backward of dout (x, mean, rstd from layerNormForward). */
  layerNormBackward(dx: Buf, dg: Buf, db: Buf, dout: Buf, x: Buf, g: Buf, mean: Buf, rstd: Buf, T: number, C: number): void
  /**
   * Backward of out[T, N] = x[T, K] · W[N, K]^T + b:  dx[T, K] += dout · W;  dw[N, K] += dout^T · x;
   * db[N] += Σ_t dout[t, :]. Any of dx / dw / db may be null (not wanted).
   */
  matmulBackward(dx: Buf | null, dw: Buf | null, db: Buf | null, dout: Buf, x: Buf, w: Buf, T: number, K: number, N: number): void
  /** dx[i] = dout[i] · act'(x[i]) for i < n, x the activation's INPUT (stores; dx may be dout). */
  activationBackward(dx: Buf, x: Buf, dout: Buf, n: number, act: Activation): void
  /** dtable[ids[t], :] += dout[t, :] for t < T (negative ids are skipped). */
  embedBackward(dtable: Buf, dout: Buf, ids: Int32Array, T: number, C: number): void
  /**
   * Backward of attention(out, q, k, v, o) over one sequence with o.pos0 = 0 (keys = the T rows of k
   * and v), given its probabilities probs [nHead, T, T]: dq[T, C], dk[T, C], dv[T, C] += ...
   */
  attentionBackward(dq: Buf, dk: Buf, dv: Buf, dout: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, o: AttentionOptions): void
  /** The inverse rotation of rotary() (the backward of a rotation is the rotation by -angle), in place. */
  rotaryBackward(dx: Buf, table: Buf, positions: Int32Array, T: number, nHead: number, headDim: number, rotaryDim: number): void
  /**
   * Softmax cross-entropy of T rows: losses[t] = logsumexp(logits[t, :]) - logits[t, targets[t]] and
   * dlogits[t, :] = (softmax(logits[t, :]) - onehot(targets[t])) · scale (stores; dlogits may be logits).
   * A negative target (ignore_index) gives loss 0 and a zero gradient row.
   */
  crossEntropy(dlogits: Buf, losses: Buf, logits: Buf, targets: Int32Array, T: number, V: number, scale: number): void
}
