// index.ts — the kernel module's exports (re-exports only). Narrow ABI: usize pointers (byte
// offsets into the imported shared memory), i32 sizes, f32 scalars. See each file for shapes.
export {
  matmul_f32, matmul_f32g, matmul_f16, matmul_bf16,
  matmul_f32_naive, matmul_f32g_naive, matmul_f16_naive, matmul_bf16_naive,
} from './gemm'
// q8 / q4 weights times q8-quantized activations (integer block dot products): gemm_q8.ts; the
// activations are quantized first by quantize_act (quant.ts)
export { matmul_q8, matmul_q8_naive, matmul_q4, matmul_q4_naive } from './gemm_q8'
// q8 / q4 weights have their own layout (quant.ts: K chunks of row groups): their quantizers and row gathers live there
export {
  group_rows_f32, f16_nonfinite, read_ahead_sink, store_half, store_half_naive, quantize_q8, quantize_q4, quantize_act, quantize_act_naive, embed_q8, embed_q8_naive, embed_q4, embed_q4_naive,
} from './quant'
export {
  embed_f32, embed_f32g, embed_f16, embed_bf16, embed_f32_naive, embed_f32g_naive, embed_f16_naive, embed_bf16_naive,
} from './embed'
export { layernorm, layernorm_naive } from './norm'
export {
  gelu_tanh, gelu_erf, relu, silu, quick_gelu, add,
  gelu_tanh_naive, gelu_erf_naive, relu_naive, silu_naive, quick_gelu_naive, add_naive,
} from './act'
export { softmax, softmax_naive } from './softmax'
export { logprobs, logprobs_naive } from './logprobs'
export { attention, attention_naive } from './attention'
export { rotary, rotary_naive, rotary_backward, rotary_backward_naive } from './rope'
export { probe_stream_read, probe_madd, touch_pages, heap_base } from './probe'
// training (f32 only): see backward.ts, act_backward.ts, crossentropy.ts
export {
  layernorm_forward, layernorm_forward_naive, layernorm_backward, layernorm_backward_naive,
  matmul_backward_dx, matmul_backward_dx_naive, matmul_backward_dw, matmul_backward_dw_naive,
  embed_backward, embed_backward_naive,
  attention_backward, attention_backward_naive,
} from './backward'
export {
  gelu_tanh_backward, gelu_erf_backward, relu_backward, silu_backward, quick_gelu_backward,
  gelu_tanh_backward_naive, gelu_erf_backward_naive, relu_backward_naive, silu_backward_naive, quick_gelu_backward_naive,
} from './act_backward'
export { crossentropy, crossentropy_naive } from './crossentropy'
