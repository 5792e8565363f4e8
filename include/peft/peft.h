/* peft.cpp's C API: the calls of the C++ API (peft/peft.hpp) for C and for other languages'
 * foreign-function interfaces. Every call that can fail returns PEFT_OK or PEFT_ERROR; after an
 * error, peft_last_error() holds the message (per thread, until the next failing call). Strings
 * the library returns are freed with peft_string_free. A peft_model is not safe to use from two
 * threads at once.
 *
 *   peft_model* m = NULL;
 *   if (peft_model_load("models/qwen-tiny", NULL, &m) != PEFT_OK) {
 *     fprintf(stderr, "error: %s\n", peft_last_error());
 *     return 1;
 *   }
 *   peft_model_create_adapter(m, "lora", "{\"r\": \"8\"}", 42);
 *   ...
 *   peft_model_free(m);
 */
#ifndef PEFT_PEFT_H
#define PEFT_PEFT_H

#include <stddef.h>
#include <stdint.h>

#ifndef PEFT_API
#define PEFT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum peft_status { PEFT_OK = 0, PEFT_ERROR = 1 } peft_status;

typedef struct peft_model peft_model;

/* "MAJOR.MINOR.PATCH". */
PEFT_API const char* peft_version(void);
/* The message of this thread's last failed call ("" when none failed). */
PEFT_API const char* peft_last_error(void);
PEFT_API void peft_string_free(char* s);

/* base_dtype: NULL or "" (as stored), "f32", "bf16", "q8_0", "q4_0". */
PEFT_API peft_status peft_model_load(const char* dir, const char* base_dtype, peft_model** out);
PEFT_API void peft_model_free(peft_model* model);
PEFT_API int64_t peft_model_vocab_size(const peft_model* model);

/* Attaches one adapter folder (PEFT layout, any method), replacing any attached. */
PEFT_API peft_status peft_model_load_adapter(peft_model* model, const char* dir);
/* A fresh adapter of `method` ("lora", "prompt", ...); settings_json is NULL or a JSON object of
 * the method's flags as `peft train` takes them, names without "--", values as strings:
 * {"r": "16", "target-modules": "q_proj,v_proj"}. */
PEFT_API peft_status peft_model_create_adapter(peft_model* model, const char* method,
                                               const char* settings_json, uint64_t seed);
PEFT_API peft_status peft_model_save_adapter(const peft_model* model, const char* dir);

typedef struct peft_train_options {
  const char* data;      /* training records (required) */
  const char* eval_data; /* or NULL */
  const char* out_dir;   /* metrics.jsonl, loss.svg and the adapter; or NULL */
  int64_t epochs, max_steps, batch_size, grad_accum, max_len, warmup_steps;
  float lr, weight_decay, clip_grad;
  uint64_t seed;
  int shuffle;
} peft_train_options;

/* The defaults of `peft train`. */
PEFT_API peft_train_options peft_train_options_default(void);
/* After every optimizer step; return 0 to stop training there. */
typedef int (*peft_step_callback)(int64_t step, int64_t total_steps, double loss, double lr,
                                  void* user);
/* Trains the attached adapter; final_loss may be NULL. */
PEFT_API peft_status peft_model_train(peft_model* model, const peft_train_options* options,
                                      peft_step_callback on_step, void* user, double* final_loss);

/* Token-weighted mean NLL (nats) and perplexity over a data file; outputs may be NULL. */
PEFT_API peft_status peft_model_evaluate(peft_model* model, const char* data_file, double* loss,
                                         double* ppl, int64_t* tokens);

/* Each new piece of text as it is produced; return 0 to stop. */
typedef int (*peft_text_callback)(const char* piece, void* user);
/* Greedy generation; *text_out (may be NULL) gets the whole new text, freed with
 * peft_string_free. */
PEFT_API peft_status peft_model_generate(peft_model* model, const char* prompt,
                                         int64_t max_new_tokens, peft_text_callback on_text,
                                         void* user, char** text_out);

/* Next-token logits of n ids: out holds n × vocab_size floats (out_len of them). */
PEFT_API peft_status peft_model_logits(peft_model* model, const int32_t* ids, size_t n, float* out,
                                       size_t out_len);

/* The adapters folded into the weights, as a Hugging Face folder; dtype NULL, "f32" or "bf16". */
PEFT_API peft_status peft_model_merge(const peft_model* model, const char* out_dir,
                                      const char* dtype);
/* GGUF for llama.cpp: the attached LoRA adapter (merge 0), or the model with the adapters folded
 * in (merge 1, or no adapter attached); dtype NULL or "f32", "bf16", "q8_0" (models). */
PEFT_API peft_status peft_model_export_gguf(const peft_model* model, const char* path,
                                            const char* dtype, int merge);

#ifdef __cplusplus
}
#endif

#endif /* PEFT_PEFT_H */
