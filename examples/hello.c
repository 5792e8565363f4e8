/* peft.cpp from C: loads a model (and optionally an adapter folder) and prints a greedy
 * continuation of a prompt as it is generated.
 *   hello_c MODEL_DIR [ADAPTER_DIR] */
#include <peft/peft.h>
#include <stdio.h>

static int print_piece(const char* piece, void* user) {
  (void)user;
  fputs(piece, stdout);
  fflush(stdout);
  return 1; /* 0 would stop */
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [ADAPTER_DIR]\n", argv[0]);
    return 2;
  }
  printf("peft.cpp %s\n", peft_version());
  peft_model* model = NULL;
  if (peft_model_load(argv[1], NULL, &model) != PEFT_OK ||
      (argc > 2 && peft_model_load_adapter(model, argv[2]) != PEFT_OK) ||
      peft_model_generate(model, "Hello", 16, print_piece, NULL, NULL) != PEFT_OK) {
    fprintf(stderr, "hello_c: error: %s\n", peft_last_error());
    peft_model_free(model);
    return 1;
  }
  printf("\n");
  peft_model_free(model);
  return 0;
}
