// Export for llama.cpp (GGUF, io/gguf.h): a decoder model (Qwen2, Llama, Baichuan-7B) as a model
// file llama.cpp loads, optionally with LoRA adapters folded in, and LoRA adapters in llama.cpp's
// adapter layout. Both follow what llama.cpp's own converters (convert_hf_to_gguf.py,
// convert_lora_to_gguf.py) write:
//   - tensor names: model.embed_tokens → token_embd, model.layers.{i}.self_attn.q_proj →
//     blk.{i}.attn_q, ... (table in gguf_export.cpp); Baichuan's W_pack [3C, C] is split into
//     attn_q / attn_k / attn_v;
//   - Llama and Baichuan apply RoPE to interleaved pairs in llama.cpp but to the two halves of a
//     head in transformers, so the rows of Q and K (weights, biases, and a LoRA B) are permuted
//     per head: row h·D + 2i + j of the GGUF tensor is row h·D + j·D/2 + i of the HF one;
//   - an adapter file has general.type "adapter", adapter.type "lora", adapter.lora.alpha, and
//     per targeted weight `<gguf name>.lora_a` [r, in] and `.lora_b` [out, r]. llama.cpp scales
//     every pair by alpha / r; a module whose PEFT scale differs (rsLoRA, rank_pattern,
//     alpha_pattern) has the ratio folded into its B, so the product is exact.
#pragma once

#include <string>

#include "core/dtype.h"
#include "models/model.h"
#include "peft/method.h"

namespace peft {

// The model as a llama.cpp GGUF model file: metadata from its config, the tokenizer of
// `model_dir` (byte-level BPE tokenizer.json or SentencePiece tokenizer.model; none: llama.cpp's
// "no_vocab"), and every weight in `dtype` (f32, bf16 or q8_0; vectors stay f32, and q8_0
// matrices whose rows are not a multiple of 32 are written f32). With `merge`, the LoRA deltas of
// every attached method are folded in first (W += s·B·A in f32; Error for a method that cannot
// merge). Returns how many weights had a delta folded in.
int export_gguf_model(const Model& model, const std::string& model_dir, const MethodSet* merge,
                      DType dtype, const std::string& path);

// The LoRA adapters of `methods` (one or more LoRA methods; their pairs must not overlap) in
// llama.cpp's adapter layout, A and B in `dtype` (f32 or bf16). Error for a method that is not
// LoRA or an adapter that trains base-model biases (llama.cpp adapters hold A and B only).
// Returns how many weights have a pair.
int export_gguf_lora(const Model& model, const MethodSet& methods, DType dtype,
                     const std::string& path);

}  // namespace peft
