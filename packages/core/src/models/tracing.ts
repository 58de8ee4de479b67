// The one hook through which a forward pass shows its intermediate tensors (step-through, golden
// export, tests). The forward calls `tracer?.(...)` at each stage; with no tracer attached nothing is
// built, copied or named, so the token loop pays nothing.
//
// A tensor lives in a device buffer that the next stage overwrites, and a GPU can only hand it to the
// host later. So an event offers read(): called INSIDE the tracer callback it takes a snapshot on the
// device at once (an ordered copy) and resolves to the data when the device delivers it. A tracer
// that does not call read() costs no copy.
//
// Stage names (L = layer index from 0):
//   embed                  token (+ position) embedding, = hidden_states[0]      [T, C]
//   h.L.ln_1               input LayerNorm of block L                             [T, C]
//   h.L.attn.q/k/v         projections (q and k after rotary for GPT-J)            [T, C]
//   h.L.attn.probs         softmax probabilities over keys 0 .. pos0+T-1          [nHead, T, pos0+T]
//   h.L.attn.out           attention output after the output projection           [T, C]
//   h.L.ln_2               second LayerNorm (sequential blocks only)             [T, C]
//   h.L.mlp.hidden         activation of the MLP's inner layer                   [T, F]
//   h.L.mlp.out            MLP output                                             [T, C]
//   h.L.out                residual stream after block L, = hidden_states[L+1]   [T, C]
//   h.L.lens               logit lens: the model's final norm and LM head on the  [1, nVocab]
//                          last row of h.L.out (only with forward's logitLens option)
//   ln_f                   final LayerNorm, = hidden_states[n_layer]             [T, C]
//   logits                 LM head output of the rows computed                   [R, nVocab]

export interface TraceEvent {
  name: string
  layer: number | null
  shape: readonly number[]
  /** Sequence position of the first row of the tensor (rows are positions pos0, pos0+1, ...). */
  pos0: number
  /** Snapshots the tensor now (call it inside the tracer) and resolves to its data. */
  read(): Promise<Float32Array>
}

export type Tracer = (event: TraceEvent) => void
